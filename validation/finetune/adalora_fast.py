"""AdaLoRA's rank allocation with peft's arithmetic and few host synchronisations.

peft's ``AdaLoraModel.update_and_allocate(global_step)`` (run after every optimizer step) does, per step and
per adapted module, a dozen small tensor operations from Python (``RankAllocator.update_ipt``: about 11
operators for each ``lora_A``/``lora_B``/``lora_E`` parameter) and, at every budgeting step,
``RankAllocator.mask_to_budget``, which reads the threshold with ``.item()`` and builds the rank pattern
with one ``.tolist()`` per module, i.e. ``1 + n_modules`` device -> host synchronisations; after the
budgeting phase ``mask_using_rank_pattern`` copies each module's pattern from a Python list to the device
(``n_modules`` host -> device copies) at every step. On a GPU, with MPNet-base's 72 adapted linears, that is
about 3,700 operators and 73 synchronisations per budgeting step: the step is bound by the host.

:class:`FastAdaLoraAllocator` computes the same thing:

* the importance EMAs with ``torch._foreach_*`` operators (one launch per operator for all parameters on
  CUDA; on CPU the same per-tensor kernels): the same elementwise IEEE operations in the same order as peft,
  so the same bits;
* the per-triplet scores with peft's own per-module reductions (``torch.mean`` over the same tensors, so
  the same reduction order), the threshold with ``torch.kthvalue`` over the same concatenation, kept on the
  device (no ``.item()``: comparing a float32 tensor with the float32 threshold or with the same value as a
  Python float is the same comparison);
* the rank pattern as a device bool vector, turned into peft's ``{name: [bool, ...]}`` (one
  synchronisation) only when it must exist on the host: at the final allocation step
  (``global_step == total_step - tfinal``), before a checkpoint is saved, at the end of training, or when
  :meth:`FastAdaLoraAllocator.materialise` is called. Between those points ``peft_config.rank_pattern`` holds
  the last materialised pattern (peft's holds the pattern of the last budgeting step); nothing in training
  reads it;
* after the final allocation, the masks of the final pattern stay on the device and are applied with
  ``masked_fill_`` (peft: the same ``masked_fill_`` with a mask rebuilt from the Python lists every step).

Budget schedule (``budget_schedule``) and ``reset_ipt`` are peft's own methods, called as peft calls them.
The fast path runs only if the installed peft's ``RankAllocator`` / ``AdaLoraModel`` methods it
re-implements are, token for token (comments and layout ignored), those of a verified peft version
(:data:`VERIFIED_SOURCES`) and no DeepSpeed configuration is active; otherwise every step goes to peft's
``update_and_allocate`` and the reason is recorded (:attr:`FastAdaLoraAllocator.path`,
:attr:`FastAdaLoraAllocator.fallback_reason`). Equality with peft (masks, rank patterns, parameters and
losses, bit for bit on CPU float32) is tested in tests/unit/validation/finetune/test_adalora_fast.py.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import textwrap
import tokenize
from pathlib import Path
from typing import Any

#: the methods whose semantics the fast path reproduces (class name, method name)
REIMPLEMENTED: tuple[tuple[str, str], ...] = (
    ("RankAllocator", "update_ipt"),
    ("RankAllocator", "_element_score"),
    ("RankAllocator", "_combine_ipt"),
    ("RankAllocator", "mask_to_budget"),
    ("RankAllocator", "update_and_allocate"),
    ("RankAllocator", "mask_using_rank_pattern"),
    ("AdaLoraModel", "update_and_allocate"),
)


def _source_tokens(src: str) -> list[str]:
    """The token strings of ``src`` without comments, blank lines and indentation width, one string per
    f-string whatever the interpreter.

    Python 3.12 tokenizes an f-string into ``FSTRING_START`` / ``FSTRING_MIDDLE`` / ``FSTRING_END`` and the
    tokens of its replacement fields (PEP 701), where 3.11 returns one ``STRING`` token holding the literal's
    source text; each f-string is put back together from its source span so that a fingerprint taken on
    3.11 (this project's CI) matches one taken on 3.12 (the GPU image).
    """
    lines = src.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    fs_start = getattr(tokenize, "FSTRING_START", None)  # 3.12+
    fs_end = getattr(tokenize, "FSTRING_END", None)
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}
    parts: list[str] = []
    depth, begin = 0, (0, 0)
    for t in tokenize.generate_tokens(io.StringIO(src).readline):
        if fs_start is not None and t.type == fs_start:
            if depth == 0:
                begin = t.start
            depth += 1
            continue
        if depth:
            if t.type == fs_end:
                depth -= 1
                if depth == 0:
                    parts.append(src[offset(begin) : offset(t.end)])
            continue
        if t.type in skip:
            continue
        parts.append("<I>" if t.type == tokenize.INDENT else t.string)
    return parts


def _token_hash_source(src: str) -> str:
    """Hash of a function's source tokens (:func:`_source_tokens`) without its docstring."""
    parts = _source_tokens(textwrap.dedent(src))
    first_indent = next((i for i, p in enumerate(parts) if p == "<I>"), None)
    if (
        first_indent is not None
        and first_indent + 2 < len(parts)
        and _is_string_literal(parts[first_indent + 1])
        and parts[first_indent + 2] in ("\n", "\r\n")
    ):
        del parts[first_indent + 1 : first_indent + 3]  # the docstring
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _is_string_literal(text: str) -> bool:
    """Whether ``text`` is a (possibly prefixed) string literal token."""
    return bool(text) and text.lstrip("rRbBuUfF")[:1] in ("'", '"')


def _token_hash(func: Any) -> str:
    """Hash of ``func``'s source tokens without docstring, comments, blank lines and indentation width."""
    return _token_hash_source(inspect.getsource(func))


def peft_fingerprint() -> dict[str, str]:
    """``{"Class.method": token hash}`` of the installed peft's methods listed in :data:`REIMPLEMENTED`.

    Returns
    -------
    dict of str to str
        A missing class or method maps to ``"missing"``.
    """
    from peft.tuners.adalora import layer as layer_mod
    from peft.tuners.adalora import model as model_mod

    classes = {"RankAllocator": getattr(layer_mod, "RankAllocator", None)}
    classes["AdaLoraModel"] = getattr(model_mod, "AdaLoraModel", None)
    out: dict[str, str] = {}
    for cls_name, meth in REIMPLEMENTED:
        fn = getattr(classes[cls_name], meth, None)
        try:
            out[f"{cls_name}.{meth}"] = _token_hash(fn) if fn is not None else "missing"
        except (OSError, TypeError):  # no source available (frozen / compiled install)
            out[f"{cls_name}.{meth}"] = "missing"
    return out


#: SHA-256 (first 16 hex digits) of the token streams (docstrings, comments and layout dropped) of the
#: peft methods the fast path re-implements, per verified peft version (:func:`peft_fingerprint`).
#: 0.21.0 (the H200 image's peft) has the same fingerprint as 0.21.2 (checked 2026-11-30 from its PyPI
#: wheel, and test_adalora_fast.py passed with it on PYTHONPATH); any listed fingerprint is accepted.
_FINGERPRINT_0_21 = {
    "RankAllocator.update_ipt": "5ebd75dd8d771895",
    "RankAllocator._element_score": "062874857cb9ab9e",
    "RankAllocator._combine_ipt": "2eda615a9423c8c5",
    "RankAllocator.mask_to_budget": "846a6c354a29ab60",
    "RankAllocator.update_and_allocate": "d24fcf400c3e612c",
    "RankAllocator.mask_using_rank_pattern": "46f5a8225bc14fc5",
    "AdaLoraModel.update_and_allocate": "e707beb2e5a9b72b",
}
VERIFIED_SOURCES: dict[str, dict[str, str]] = {
    "0.21.0": dict(_FINGERPRINT_0_21),
    "0.21.2": dict(_FINGERPRINT_0_21),
}


def check_peft_compatible(peft_model: Any) -> str | None:
    """Why the fast path cannot run on ``peft_model`` (``None`` when it can).

    Parameters
    ----------
    peft_model : peft.PeftModel
        A model made by ``get_peft_model`` with an ``AdaLoraConfig``.

    Returns
    -------
    str or None
        A sentence naming the first missing attribute or differing method, or ``None``.
    """
    base = getattr(peft_model, "base_model", None)
    ra = getattr(base, "rankallocator", None)
    if ra is None:
        return "the model has no peft AdaLoRA rank allocator (base_model.rankallocator)"
    for attr in ("ipt", "exp_avg_ipt", "exp_avg_unc", "beta1", "beta2", "init_bgt", "adapter_name"):
        if not hasattr(ra, attr):
            return f"peft's RankAllocator has no attribute {attr!r}"
    for meth in ("budget_schedule", "reset_ipt"):
        if not callable(getattr(ra, meth, None)):
            return f"peft's RankAllocator has no method {meth!r}"
    if not hasattr(base, "trainable_adapter_name") or not hasattr(base, "model"):
        return "peft's AdaLoraModel has no trainable_adapter_name / model"
    fp = peft_fingerprint()
    known = [v for v in VERIFIED_SOURCES.values() if v == fp]
    if not known:
        import peft

        ref = list(VERIFIED_SOURCES.values())[-1] if VERIFIED_SOURCES else {}
        diff = sorted(k for k in fp if ref.get(k) != fp[k])
        return (
            f"peft {peft.__version__}: the source of {', '.join(diff)} differs from the verified peft "
            f"version(s) {sorted(VERIFIED_SOURCES)}"
        )
    try:
        from peft.tuners.adalora import layer as layer_mod

        ds = getattr(layer_mod, "deepspeed_config", None)
        if ds is not None and ds() is not None:
            return "a DeepSpeed configuration is active (peft reads the gradients through DeepSpeed)"
    except Exception as exc:  # noqa: BLE001  # any failure of the probe: let peft handle it
        return f"cannot check for DeepSpeed ({type(exc).__name__}: {exc})"
    return None


class FastAdaLoraAllocator:
    """Drop-in for ``peft_model.base_model.update_and_allocate(global_step)`` (see the module docstring).

    Parameters
    ----------
    peft_model : peft.PeftModel
        The AdaLoRA model; its ``base_model.rankallocator`` holds the importance state (shared with peft,
        so either implementation can take any step).
    force_peft : bool, default False
        Use peft's ``update_and_allocate`` for every step (the reference path).

    Attributes
    ----------
    path : str
        ``"fast"`` or ``"peft"``.
    fallback_reason : str or None
        Why the fast path is not used (``None`` when it is, or when ``force_peft``).
    peft_steps : int
        Steps handed to peft although the fast path was chosen (a parameter without gradient).
    """

    def __init__(self, peft_model: Any, *, force_peft: bool = False) -> None:
        self.peft_model = peft_model
        self.base = peft_model.base_model
        self.fallback_reason: str | None = None if force_peft else check_peft_compatible(peft_model)
        self.path = "peft" if (force_peft or self.fallback_reason) else "fast"
        self.peft_steps = 0
        self._pending: Any = None  # device bool vector of the last budgeting step's kept triplets
        self._final_pattern: dict[str, list[bool]] | None = None
        self._final_drops: list[Any] | None = None
        if self.path == "fast":
            self._collect()

    # ------------------------------------------------------------------------------------------ setup
    def _collect(self) -> None:
        ra = self.base.rankallocator
        adapter = ra.adapter_name
        named = list(self.base.model.named_parameters())
        # update_ipt's set and order: every parameter with "lora_" and the adapter name in its name
        self.ipt_names = [n for n, _ in named if "lora_" in n and adapter in n]
        self.ipt_params = [p for n, p in named if "lora_" in n and adapter in n]
        a_key, b_key, e_key = (f"lora_{x}.{adapter}" for x in "ABE")
        mods: dict[str, dict[str, Any]] = {}
        self.e_names: list[str] = []
        for n, p in named:
            for key, letter in ((a_key, "A"), (b_key, "B"), (e_key, "E")):
                if key in n:
                    mods.setdefault(n.replace(f"lora_{letter}", "%s"), {})[letter] = (n, p)
            if e_key in n:
                self.e_names.append(n)
        incomplete = [m for m, d in mods.items() if set(d) != {"A", "B", "E"}]
        if incomplete or not mods:
            self.path = "peft"
            self.fallback_reason = f"modules without lora_A/lora_B/lora_E triplets: {incomplete[:3]}"
            return
        # peft's vector_ipt order (first appearance of a module's A or B); the order of the concatenation
        # does not change kthvalue's value, it is kept anyway
        self.modules = list(mods)
        self.triplets = [(mods[m]["A"][0], mods[m]["B"][0], mods[m]["E"][0]) for m in self.modules]
        e_param = {n: p for n, p in named}
        self.e_params = [e_param[n] for n in self.e_names]
        # E rows per module, in the concatenation's order, and where each E parameter's rows sit in it
        self.sizes = [int(mods[m]["E"][1].shape[0]) for m in self.modules]
        e_of_module = {mods[m]["E"][0]: i for i, m in enumerate(self.modules)}
        self.e_index = [e_of_module[n] for n in self.e_names]

    # ------------------------------------------------------------------------------------------ steps
    def __call__(self, global_step: int) -> None:
        """Run AdaLoRA's allocation for the optimizer step ``global_step`` (0-based), as peft does."""
        if self.path != "fast" or any(p.grad is None for p in self.ipt_params):
            if self.path == "fast":
                self.peft_steps += 1
                self.materialise()
            self.base.update_and_allocate(global_step)
            return
        import torch

        cfg = self.base.peft_config[self.base.trainable_adapter_name]
        ra = self.base.rankallocator
        boundary = cfg.total_step - cfg.tfinal
        with torch.no_grad():
            if global_step < boundary:
                self._update_ipt(ra)
                budget, mask_ind = ra.budget_schedule(global_step)
                if mask_ind:
                    self._pending = self._mask_to_budget(ra, budget)
            elif global_step == boundary:
                budget, _ = ra.budget_schedule(global_step)
                keep = self._mask_to_budget(ra, budget)
                self._pending = keep
                cfg.rank_pattern = self._final_pattern = self._pattern(keep)
                drops = (~keep).split(self.sizes)
                self._final_drops = [drops[i].view(-1, 1) for i in self.e_index]
                self._pending = None
                ra.reset_ipt()
            else:
                if cfg.rank_pattern is self._final_pattern and self._final_drops is not None:
                    for p, drop in zip(self.e_params, self._final_drops):
                        p.masked_fill_(drop, 0.0)
                else:  # the pattern was replaced (a saved checkpoint truncates its keys): peft's path
                    ra.mask_using_rank_pattern(self.base.model, cfg.rank_pattern)

    def _update_ipt(self, ra: Any) -> None:
        """``RankAllocator.update_ipt`` with ``torch._foreach_*`` (same operations, same order)."""
        import torch

        names = self.ipt_names
        for n, p in zip(names, self.ipt_params):
            if n not in ra.ipt:
                ra.ipt[n] = torch.zeros_like(p)
                ra.exp_avg_ipt[n] = torch.zeros_like(p)
                ra.exp_avg_unc[n] = torch.zeros_like(p)
        grads = [p.grad for p in self.ipt_params]
        # ipt = (p * p.grad).abs()
        ipt = torch._foreach_mul(self.ipt_params, grads)
        torch._foreach_abs_(ipt)
        # exp_avg_ipt = beta1 * exp_avg_ipt + (1 - beta1) * ipt
        eai = torch._foreach_mul([ra.exp_avg_ipt[n] for n in names], ra.beta1)
        torch._foreach_add_(eai, torch._foreach_mul(ipt, 1 - ra.beta1))
        # exp_avg_unc = beta2 * exp_avg_unc + (1 - beta2) * (ipt - exp_avg_ipt).abs()
        dev = torch._foreach_sub(ipt, eai)
        torch._foreach_abs_(dev)
        eau = torch._foreach_mul([ra.exp_avg_unc[n] for n in names], ra.beta2)
        torch._foreach_add_(eau, torch._foreach_mul(dev, 1 - ra.beta2))
        for n, a, b, c in zip(names, ipt, eai, eau):
            ra.ipt[n] = a
            ra.exp_avg_ipt[n] = b
            ra.exp_avg_unc[n] = c

    def _mask_to_budget(self, ra: Any, budget: int) -> Any:
        """``RankAllocator.mask_to_budget`` without host synchronisation; returns the kept triplets.

        Returns
        -------
        torch.Tensor
            ``(sum of E rows,)`` bool on the parameters' device, modules in :attr:`modules` order.
        """
        import torch

        names = [n for t in self.triplets for n in t]
        # _element_score: exp_avg_ipt * exp_avg_unc
        scores = torch._foreach_mul([ra.exp_avg_ipt[n] for n in names], [ra.exp_avg_unc[n] for n in names])
        comb_a, comb_b, ipt_e = [], [], []
        for i in range(len(self.triplets)):
            s_a, s_b, s_e = scores[3 * i : 3 * i + 3]
            comb_a.append(torch.mean(s_a, dim=1, keepdim=True).view(-1))
            comb_b.append(torch.mean(s_b, dim=0, keepdim=False).view(-1))
            ipt_e.append(s_e.view(-1))
        # _combine_ipt: cat([a, b], dim=1).sum(dim=1) is a + b (two non-negative terms: exact either way),
        # then ipt_E + that sum
        sum_ipt = torch._foreach_add(ipt_e, torch._foreach_add(comb_a, comb_b))
        all_score = torch.cat(sum_ipt)
        threshold = torch.kthvalue(all_score, k=ra.init_bgt - budget)[0]
        drop = all_score <= threshold
        drops = drop.split(self.sizes)
        for p, i in zip(self.e_params, self.e_index):
            p.masked_fill_(drops[i].view(-1, 1), 0.0)
        return ~drop

    # ------------------------------------------------------------------------------------------ host
    def _pattern(self, keep: Any) -> dict[str, list[bool]]:
        """peft's rank pattern ``{lora_E parameter name: [bool per row]}`` from the kept vector (one sync)."""
        flat = keep.tolist()
        starts = [0]
        for s in self.sizes:
            starts.append(starts[-1] + s)
        return {n: flat[starts[i] : starts[i + 1]] for n, i in zip(self.e_names, self.e_index)}

    def materialise(self) -> None:
        """Write the last budgeting step's pattern to ``peft_config.rank_pattern`` (as peft would have)."""
        if self._pending is None:
            return
        cfg = self.base.peft_config[self.base.trainable_adapter_name]
        cfg.rank_pattern = self._pattern(self._pending)
        self._pending = None

    # ------------------------------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """The allocation state a resumed run needs, after :meth:`materialise` (tensors copied to the CPU).

        Returns
        -------
        dict
            ``{"ipt", "exp_avg_ipt", "exp_avg_unc"}``: peft's ``RankAllocator`` importance state
            (``{parameter name: tensor}``, the shapes of the ``init_r`` adapters); ``"rank_pattern"``:
            ``peft_config.rank_pattern`` (``{lora_E name: [bool per row]}`` or ``None``); ``"final"``: whether
            that pattern is the final allocation the fast path masks with; ``"peft_steps"``.
        """
        self.materialise()
        ra = self.base.rankallocator
        cfg = self.base.peft_config[self.base.trainable_adapter_name]
        pattern = cfg.rank_pattern
        copied = None if pattern is None else {k: [bool(b) for b in v] for k, v in pattern.items()}
        return {
            **{
                key: {n: t.detach().to("cpu", copy=True) for n, t in getattr(ra, key).items()}
                for key in ("ipt", "exp_avg_ipt", "exp_avg_unc")
            },
            "rank_pattern": copied,
            "final": self._final_pattern is not None and pattern is self._final_pattern,
            "peft_steps": int(self.peft_steps),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back a :meth:`state_dict` into this allocator and its freshly prepared model.

        The importance tensors go to the device of the parameter of the same name; after this call the
        allocator continues exactly as the one that saved the state would have (the next step's call is the
        same computation on the same values).

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned (possibly written and read back with ``torch.save`` /
            ``torch.load``).
        """
        ra = self.base.rankallocator
        params = dict(self.base.model.named_parameters())
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            setattr(ra, key, {n: t.to(params[n].device) for n, t in state[key].items()})
        cfg = self.base.peft_config[self.base.trainable_adapter_name]
        pattern = state["rank_pattern"]
        cfg.rank_pattern = None if pattern is None else {k: list(v) for k, v in pattern.items()}
        self._pending = None  # state_dict materialised it
        self._final_pattern = self._final_drops = None
        if state["final"] and self.path == "fast" and cfg.rank_pattern is not None:
            import torch

            self._final_pattern = cfg.rank_pattern
            self._final_drops = [
                ~torch.tensor(cfg.rank_pattern[n], dtype=torch.bool, device=p.device).view(-1, 1)
                for n, p in zip(self.e_names, self.e_params)
            ]
        self.peft_steps = int(state["peft_steps"])

    def info(self) -> dict[str, Any]:
        """What the cell records: the path taken and why (JSON-serialisable)."""
        import peft

        out: dict[str, Any] = {"allocator": self.path, "peft_version": peft.__version__}
        if self.fallback_reason:
            out["allocator_fallback_reason"] = self.fallback_reason
        if self.peft_steps:
            out["allocator_peft_steps"] = self.peft_steps
        return out


def allocator_from_bench(path: str | Path) -> str:
    """The AdaLoRA allocator a campaign should use on a device, from ``scripts/adalora_step_bench.py``'s
    JSON lines of that device (``--methods ...,adalora@peft,adalora@fast``).

    Parameters
    ----------
    path : str or Path
        The bench output (one JSON object per line, ``method`` = ``"adalora@peft"`` / ``"adalora@fast"``).

    Returns
    -------
    str
        ``"fast"`` when the fast line ran the fast path (``method_info_path``) and ended with the same
        parameters as peft's (``params_sha256``), else ``"peft"``.

    Raises
    ------
    ConfigError
        The file is missing or lacks one of the two lines.
    """
    from gelora.errors import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no step-bench output at {p}")
    lines = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    by = {r.get("method"): r for r in lines if isinstance(r, dict)}
    missing = [m for m in ("adalora@peft", "adalora@fast") if m not in by]
    if missing:
        raise ConfigError(f"{p}: no {' / '.join(missing)} line (run the bench with both)")
    peft_line, fast = by["adalora@peft"], by["adalora@fast"]
    ok = fast.get("method_info_path") == "fast" and fast.get("params_sha256") == peft_line.get(
        "params_sha256"
    )
    return "fast" if ok else "peft"


__all__ = [
    "FastAdaLoraAllocator",
    "allocator_from_bench",
    "REIMPLEMENTED",
    "VERIFIED_SOURCES",
    "check_peft_compatible",
    "peft_fingerprint",
]
