"""GLUE loaders for the eight tasks, in both file layouts, from a local directory or the hub.

Two layouts exist for the same data:

- the **original GLUE download** (``glue_data/<Task>/{train,dev}.tsv``): task-specific headers
  (STS-B: ``index genre ... sentence1 sentence2 score``; MRPC: ``Quality #1 ID #2 ID #1 String #2 String``
  with a UTF-8 BOM; MNLI: ``... sentence1 sentence2 ... gold_label``; QQP: ``id qid1 qid2 question1
  question2 is_duplicate``), CoLA without a header, and string labels for MNLI/QNLI/RTE
  (``entailment``/``not_entailment``...);
- the **Hugging Face ``datasets`` export**: the hub's column names (``sentence1 sentence2 label idx``,
  MNLI ``premise hypothesis label idx``), integer labels in the hub's order, an ``idx`` column.

A file is recognised by its header (a file with an ``idx`` column and the hub's columns is the export);
labels are accepted as integers or as the task's label names in either layout. Files are TSV, optionally
gzip-compressed, read with ``csv.QUOTE_NONE`` (GLUE texts contain unbalanced quotes).
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError


@dataclass(frozen=True)
class GlueTask:
    """Static description of a GLUE task.

    Attributes
    ----------
    name : str
        Hub config name (``"rte"``, ``"stsb"``, ...).
    dir_name : str
        Folder of the GLUE download (``"RTE"``, ``"STS-B"``, ...).
    label_names : tuple of str
        Class names in the hub's integer order; empty for the regression task STS-B.
    glue_columns : tuple of str
        GLUE-layout header columns for (text_a, text_b or "", label); CoLA (no header) uses positions.
    hf_columns : tuple of str
        Export-layout columns for (text_a, text_b or "", label).
    eval_splits : tuple of str
        Validation splits (MNLI has matched and mismatched).
    """

    name: str
    dir_name: str
    label_names: tuple[str, ...]
    glue_columns: tuple[str, str, str]
    hf_columns: tuple[str, str, str]
    eval_splits: tuple[str, ...] = ("validation",)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """1 for regression (STS-B), else the number of classes."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return bool(self.hf_columns[1])


#: the eight GLUE tasks (WNLI and AX are not part of the benchmark tables and are not loaded)
GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", ("unacceptable", "acceptable"), ("3", "", "1"), ("sentence", "", "label")),
        GlueTask(
            "sst2", "SST-2", ("negative", "positive"), ("sentence", "", "label"), ("sentence", "", "label")
        ),
        GlueTask(
            "mrpc",
            "MRPC",
            ("not_equivalent", "equivalent"),
            ("#1 String", "#2 String", "Quality"),
            ("sentence1", "sentence2", "label"),
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("not_duplicate", "duplicate"),
            ("question1", "question2", "is_duplicate"),
            ("question1", "question2", "label"),
        ),
        GlueTask(
            "stsb", "STS-B", (), ("sentence1", "sentence2", "score"), ("sentence1", "sentence2", "label")
        ),
        GlueTask(
            "mnli",
            "MNLI",
            ("entailment", "neutral", "contradiction"),
            ("sentence1", "sentence2", "gold_label"),
            ("premise", "hypothesis", "label"),
            eval_splits=("validation_matched", "validation_mismatched"),
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("entailment", "not_entailment"),
            ("question", "sentence", "label"),
            ("question", "sentence", "label"),
        ),
        GlueTask(
            "rte",
            "RTE",
            ("entailment", "not_entailment"),
            ("sentence1", "sentence2", "label"),
            ("sentence1", "sentence2", "label"),
        ),
    )
}

_TASK_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_m": "mnli", "mnli-mm": "mnli"}
_SPLIT_ALIASES = {
    "train": "train",
    "dev": "validation",
    "validation": "validation",
    "dev_matched": "validation_matched",
    "validation_matched": "validation_matched",
    "dev_mismatched": "validation_mismatched",
    "validation_mismatched": "validation_mismatched",
}
_SPLIT_FILES = {
    "train": ("train",),
    "validation": ("dev", "validation"),
    "validation_matched": ("dev_matched", "validation_matched"),
    "validation_mismatched": ("dev_mismatched", "validation_mismatched"),
}


@dataclass
class GlueSplit:
    """One split of a GLUE task.

    Attributes
    ----------
    task : str
        Task name (key of :data:`GLUE_TASKS`).
    split : str
        ``"train"``, ``"validation"``, ``"validation_matched"`` or ``"validation_mismatched"``.
    text_a : list of str
        First sentence of each example, length n.
    text_b : list of str or None
        Second sentence (pair tasks), length n; ``None`` for CoLA and SST-2.
    labels : numpy.ndarray
        Shape (n,): int64 class indices in the hub's order, or float32 similarity scores in [0, 5] (STS-B).
    idx : numpy.ndarray
        Shape (n,) int64 row index within the source file (the export's ``idx`` when present).
    layout : str
        ``"glue"`` (original download), ``"hf"`` (``datasets`` export file) or ``"hub"``.
    source : str
        File path relative to the data root (``"glue/RTE/train.tsv.gz"``; see
        :mod:`validation.data.provenance`) or hub identifier (``"hf://glue/rte/train"``).
    n_skipped : int
        Malformed rows skipped (only with ``bad_rows="skip"``).
    sha256 : str or None
        sha256 of the source file (None for the hub).
    protocol : dict
        Non-standard origin of the split (e.g. a part of a dev file, :mod:`validation.data.splits`);
        empty for the official split.
    path : Path or None
        Where the file was read on this machine; used in-process only, never recorded.
    """

    task: str
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray
    idx: np.ndarray
    layout: str
    source: str
    n_skipped: int = 0
    subset: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.text_a)

    @property
    def spec(self) -> GlueTask:
        return GLUE_TASKS[self.task]

    def take(self, n: int | None, seed: int = 0) -> GlueSplit:
        """A reproducible random subset of ``n`` examples (all of them when ``n`` is None or >= len).

        The subset is drawn without replacement with ``numpy.random.default_rng(seed)`` and keeps the
        original order; ``seed`` and ``n`` are recorded in ``subset``.
        """
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ConfigError(f"subset size must be >= 1, got {n}")
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(self), size=int(n), replace=False))
        return replace(
            self,
            text_a=[self.text_a[i] for i in keep],
            text_b=None if self.text_b is None else [self.text_b[i] for i in keep],
            labels=self.labels[keep],
            idx=self.idx[keep],
            subset={"n": int(n), "seed": int(seed), "of": len(self)},
        )

    def joined_texts(self, sep: str = " ") -> list[str]:
        """Inputs as single strings (pairs joined by ``sep``), e.g. for hidden-state estimates."""
        if self.text_b is None:
            return list(self.text_a)
        return [f"{a}{sep}{b}" for a, b in zip(self.text_a, self.text_b)]

    def describe(self) -> dict[str, Any]:
        """JSON-ready provenance: task, split, size, layout, source, subset (and protocol when set).

        ``source`` is ``{"file": <path relative to the data root>, "sha256": <hex>}`` for a file and
        ``{"hub": <identifier>}`` for the hub: never an absolute path of this machine.
        """
        source: dict[str, Any] = (
            {"hub": self.source} if self.layout == "hub" else {"file": self.source, "sha256": self.sha256}
        )
        out = {
            "task": self.task,
            "split": self.split,
            "n": len(self),
            "layout": self.layout,
            "source": source,
            "n_skipped": self.n_skipped,
            "subset": dict(self.subset),
        }
        if self.protocol:
            out["protocol"] = dict(self.protocol)
        return out


def task_spec(task: str) -> GlueTask:
    """The :class:`GlueTask` of a task name (case-insensitive; ``SST-2``/``STS-B`` spellings accepted)."""
    key = _TASK_ALIASES.get(task.lower(), task.lower())
    if key not in GLUE_TASKS:
        raise ConfigError(f"unknown GLUE task {task!r}; expected one of {sorted(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def _split_name(task: GlueTask, split: str) -> str:
    key = _SPLIT_ALIASES.get(split.lower())
    if task.name == "mnli" and key == "validation":
        raise ConfigError("MNLI has two validation splits: 'validation_matched' and 'validation_mismatched'")
    if key is None or (key != "train" and key not in task.eval_splits):
        raise ConfigError(
            f"unknown split {split!r} for {task.name}; expected 'train' or one of {task.eval_splits}"
        )
    return key


def find_glue_file(task: str, split: str, data_dir: str | Path) -> Path | None:
    """Local file of ``task``/``split`` under ``data_dir`` (``glue/<Task>/<split>.tsv[.gz]``), or None.

    Both ``<data_dir>/glue/<Task>`` and ``<data_dir>/<Task>`` are searched, with the GLUE file names
    (``dev.tsv``, ``dev_matched.tsv``) and the export's (``validation.tsv``, ``validation_matched.tsv``).
    """
    spec = task_spec(task)
    key = _split_name(spec, split)
    root = Path(data_dir)
    for folder in (root / "glue" / spec.dir_name, root / spec.dir_name, root / "glue" / spec.name):
        for stem in _SPLIT_FILES[key]:
            for suffix in (".tsv", ".tsv.gz"):
                path = folder / f"{stem}{suffix}"
                if path.is_file():
                    return path
    return None


def missing_file_message(task: str, split: str, data_dir: str | Path) -> str:
    """What :func:`find_glue_file` looked for, for an error when it found nothing."""
    spec = task_spec(task)
    names = "|".join(_SPLIT_FILES[_split_name(spec, split)])
    return f"no file glue/{spec.dir_name}/{{{names}}}.tsv[.gz] under {data_dir}"


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig strips the BOM of the MRPC files of the GLUE download
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115


def _parse_label(spec: GlueTask, raw: str, where: str) -> float | int:
    raw = raw.strip()
    if spec.is_regression:
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInputError(f"{where}: STS-B score {raw!r} is not a number") from None
        if not np.isfinite(value):
            raise InvalidInputError(f"{where}: STS-B score {raw!r} is not finite")
        return value
    if raw in spec.label_names:
        return spec.label_names.index(raw)
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInputError(
            f"{where}: label {raw!r} is neither an integer nor one of {list(spec.label_names)}"
        ) from None
    if not 0 <= value < spec.num_labels:
        raise InvalidInputError(f"{where}: label {value} outside 0..{spec.num_labels - 1} (test split?)")
    return value


def read_glue_file(
    path: str | Path,
    task: str,
    split: str = "train",
    *,
    bad_rows: str = "raise",
    data_dir: str | Path | None = None,
) -> GlueSplit:
    """Read one GLUE TSV file in either layout.

    Parameters
    ----------
    path : str or Path
        ``.tsv`` or ``.tsv.gz``.
    task : str
        GLUE task name.
    split : str
        Recorded split name.
    bad_rows : {"raise", "skip"}
        What to do with rows that have fewer fields than the header (the QQP train file of the GLUE
        download has a few); skipped rows are counted in ``n_skipped``.
    data_dir : str, Path or None
        Data root the recorded ``source`` is relative to (default: the default data directory; a file
        outside it is recorded by name, see :func:`validation.data.provenance.file_record`).

    Raises
    ------
    InvalidInputError
        The header fits neither layout (the message lists both expected column sets), a malformed row, or
        a bad label.
    """
    spec = task_spec(task)
    if bad_rows not in ("raise", "skip"):
        raise ConfigError(f"bad_rows must be 'raise' or 'skip', got {bad_rows!r}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"GLUE file not found: {path}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with _open_text(path) as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise InvalidInputError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    hf_needed = [c for c in spec.hf_columns if c] + ["idx"]
    glue_needed = [c for c in spec.glue_columns if c]
    start = 1
    if all(c in header for c in hf_needed):
        layout, cols = "hf", spec.hf_columns
        pos = [header.index(c) if c else -1 for c in cols]
        idx_pos = header.index("idx")
    elif spec.name == "cola" and len(header) == 4 and header[1].strip() in ("0", "1"):
        layout, start, idx_pos = "glue", 0, -1  # CoLA's GLUE files have no header
        pos = [3, -1, 1]
    elif spec.name != "cola" and all(c in header for c in glue_needed):
        layout, cols = "glue", spec.glue_columns
        pos = [header.index(c) if c else -1 for c in cols]
        idx_pos = -1
    else:
        glue_desc = (
            "no header, 4 columns: source, label, original label, sentence"
            if spec.name == "cola"
            else ", ".join(glue_needed)
        )
        raise InvalidInputError(
            f"{path}: columns {header[:12]} fit neither layout for {spec.name}: expected the GLUE download "
            f"({glue_desc}) or the Hugging Face export ({', '.join(hf_needed)})"
        )
    width = max(p for p in pos + [idx_pos] if p >= 0) + 1
    text_a: list[str] = []
    text_b: list[str] = []
    labels: list[float | int] = []
    idx: list[int] = []
    skipped = 0
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        where = f"{path}:{lineno}"
        if len(row) < width:
            if bad_rows == "skip":
                skipped += 1
                continue
            raise InvalidInputError(
                f"{where}: {len(row)} fields, expected at least {width} (bad_rows='skip' skips)"
            )
        text_a.append(row[pos[0]])
        if pos[1] >= 0:
            text_b.append(row[pos[1]])
        labels.append(_parse_label(spec, row[pos[2]], where))
        if idx_pos >= 0:
            try:
                idx.append(int(row[idx_pos]))
            except ValueError:
                raise InvalidInputError(f"{where}: idx {row[idx_pos]!r} is not an integer") from None
        else:
            idx.append(len(idx))
    if not text_a:
        raise InvalidInputError(f"{path}: no examples")
    from validation.data.provenance import file_record

    record = file_record(path, data_dir)
    return GlueSplit(
        task=spec.name,
        split=_split_name(spec, split),
        text_a=text_a,
        text_b=text_b if spec.is_pair else None,
        labels=np.asarray(labels, dtype=np.float32 if spec.is_regression else np.int64),
        idx=np.asarray(idx, dtype=np.int64),
        layout=layout,
        source=record["file"],
        n_skipped=skipped,
        sha256=record["sha256"],
        path=path,
    )


def load_glue_hub(task: str, split: str) -> GlueSplit:
    """Load a split through ``datasets.load_dataset("glue", task)`` (needs ``datasets`` and a network).

    Raises
    ------
    ConfigError
        ``datasets`` is not installed, or the hub cannot be reached (offline).
    """
    spec = task_spec(task)
    key = _split_name(spec, split)
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigError(
            f"GLUE {spec.name}/{key} is not available locally and the hub needs the 'datasets' package "
            "(pip install datasets), which is not installed"
        ) from exc
    try:
        ds = datasets.load_dataset("glue", spec.name, split=key)
    except Exception as exc:  # network, offline mode, cache: datasets raises many types
        raise ConfigError(
            f"could not load GLUE {spec.name}/{key} from the hub (offline or unreachable?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    a, b, lab = spec.hf_columns
    labels: np.ndarray = np.asarray(ds[lab], dtype=np.float32 if spec.is_regression else np.int64)
    if not spec.is_regression and bool(np.any(labels < 0)):
        raise InvalidInputError(f"hub split {spec.name}/{key} has unlabelled rows (label -1)")
    return GlueSplit(
        task=spec.name,
        split=key,
        text_a=list(ds[a]),
        text_b=list(ds[b]) if b else None,
        labels=labels,
        idx=np.asarray(ds["idx"], dtype=np.int64),
        layout="hub",
        source=f"hf://glue/{spec.name}/{key}",
    )


def load_glue(
    task: str,
    split: str = "train",
    *,
    data_dir: str | Path | None = None,
    source: str = "auto",
    bad_rows: str = "raise",
) -> GlueSplit:
    """Load a GLUE split.

    Parameters
    ----------
    task : str
        One of ``cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte``.
    split : str
        ``"train"``, ``"validation"`` (alias ``"dev"``), or for MNLI ``"validation_matched"`` /
        ``"validation_mismatched"``.
    data_dir : str, Path or None
        Root of the local data (default :func:`validation.data.default_data_dir`).
    source : {"auto", "local", "hub"}
        ``auto`` reads the local file when there is one, else tries the hub.
    bad_rows : {"raise", "skip"}
        See :func:`read_glue_file`.

    Returns
    -------
    GlueSplit
    """
    spec = task_spec(task)
    if source not in ("auto", "local", "hub"):
        raise ConfigError(f"source must be 'auto', 'local' or 'hub', got {source!r}")
    if source == "hub":
        return load_glue_hub(spec.name, split)
    tried: str
    if data_dir is None:
        from validation.data import default_data_dir

        try:
            data_dir = default_data_dir()
        except ConfigError as exc:
            if source == "local":
                raise
            data_dir, tried = None, str(exc)
    path = find_glue_file(spec.name, split, data_dir) if data_dir is not None else None
    if path is not None:
        return read_glue_file(path, spec.name, split, bad_rows=bad_rows, data_dir=data_dir)
    if data_dir is not None:
        tried = missing_file_message(spec.name, split, data_dir)
    if source == "local":
        raise ConfigError(f"GLUE {spec.name}/{split}: {tried}")
    try:
        return load_glue_hub(spec.name, split)
    except ConfigError as exc:
        raise ConfigError(f"GLUE {spec.name}/{split}: {tried}; and {exc}") from exc


def eval_splits(task: str) -> Sequence[str]:
    """Validation split names of a task (two for MNLI)."""
    return task_spec(task).eval_splits


__all__ = [
    "GLUE_TASKS",
    "GlueSplit",
    "GlueTask",
    "eval_splits",
    "find_glue_file",
    "load_glue",
    "load_glue_hub",
    "missing_file_message",
    "read_glue_file",
    "task_spec",
]
