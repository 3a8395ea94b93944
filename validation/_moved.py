"""Old module paths of ``validation`` (before the job folders), kept importable for one release.

Issue 16 moved the flat modules into ``finetune/``, ``estimators/`` and ``theory/``. Each old path in
:data:`MOVED` still imports -- ``import validation.grid`` and ``python -m validation.crosscompare ...``
work as before -- through a finder installed by ``validation/__init__.py``, not through files at the old
paths: a shim file at an old path would make git see the moved file as modified rather than renamed,
and edits made meanwhile on other branches would then not follow the move. Importing an old path
issues a :class:`DeprecationWarning` naming the new one.

An old module is a shim: a fresh module holding the public names of its new module(s) (as a
``from new import *`` file would), so old imports keep their names. ``python -m OLD`` runs the new
module's code as ``__main__``, exactly as ``python -m NEW`` does.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType

#: old module path -> the module(s) whose public names it re-exports; the first one is the module
#: ``python -m OLD`` runs. Remove after the next release.
MOVED: dict[str, tuple[str, ...]] = {
    "validation.grid": ("validation.finetune.grid",),
    "validation.runner": ("validation.finetune.runner", "validation.finetune.tasks"),
    "validation.methods": ("validation.finetune.methods",),
    "validation.metrics": ("validation.finetune.metrics",),
    "validation.lr_sensitivity": ("validation.finetune.lr_sensitivity",),
    "validation.geolora": ("validation.finetune.geolora",),
    "validation.geolora.layer": ("validation.finetune.geolora.layer",),
    "validation.geolora.optim": ("validation.finetune.geolora.optim",),
    "validation.geolora.method": ("validation.finetune.geolora.method",),
    "validation.geolora.bench": ("validation.finetune.geolora.bench",),
    "validation.geolora.plots": ("validation.finetune.geolora.plots",),
    "validation.geolora.probe": ("validation.finetune.geolora.probe",),
    "validation.estimator_accuracy": ("validation.estimators.accuracy",),
    "validation.crosscompare": ("validation.estimators.crosscompare",),
    "validation.id_drift": ("validation.estimators.id_drift",),
    "validation.knn_profile": ("validation.estimators.knn_profile",),
    "validation.gpu_bench": ("validation.estimators.gpu_bench",),
    "validation.ranks_bench": ("validation.estimators.ranks_bench",),
    "validation.bench_ratio": ("validation.estimators.bench_ratio",),
}


def public_names(module: ModuleType) -> list[str]:
    """``module.__all__`` if it has one, else its names that do not start with an underscore."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return list(names)


class _ShimLoader(importlib.abc.Loader):
    def __init__(self, old: str, targets: tuple[str, ...]) -> None:
        self.old = old
        self.targets = targets

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(
            f"{self.old} moved to {self.targets[0]}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        exported: list[str] = []
        for target in self.targets:
            new = importlib.import_module(target)
            for name in public_names(new):
                if name not in exported:
                    setattr(module, name, getattr(new, name))
                    exported.append(name)
        module.__all__ = exported  # type: ignore[attr-defined]
        module.__doc__ = f"Deprecated path of :mod:`{self.targets[0]}` (re-exports its public names)."
        if hasattr(importlib.import_module(self.targets[0]), "__path__"):
            module.__path__ = []  # a package, so that ``validation.geolora.layer`` resolves

    def get_code(self, fullname: str) -> CodeType | None:
        """The new module's code, for ``python -m OLD`` (runpy asks the loader for it)."""
        spec = importlib.util.find_spec(self.targets[0])
        if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
            return None
        return spec.loader.get_code(self.targets[0])  # type: ignore[no-any-return]


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        targets = MOVED.get(fullname)
        if targets is None:
            return None
        new = importlib.util.find_spec(targets[0])
        origin = new.origin if new is not None else None
        return importlib.util.spec_from_loader(fullname, _ShimLoader(fullname, targets), origin=origin)


def install() -> None:
    """Put the finder of the old paths first on ``sys.meta_path`` (once).

    First, so that no other finder (an editable install of an older checkout, say) answers for an old
    path; it answers only for the names of :data:`MOVED`.
    """
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


__all__ = ["MOVED", "install", "public_names"]
