"""Train/evaluation data of a task: the official files when present, else a fixed, seeded split of dev.

Offline, only the dev files of QNLI and SQuAD exist (``../shared/data/MANIFEST.md``). A user with a full
local copy (``glue/QNLI/train.tsv``, ``squad/v1.1/train-v1.1.json``...) gets the standard protocol; without
it, the runs train and score on disjoint parts of the dev data and say so in every result (the
``protocol`` entry of the provenance):

- **QNLI**: the dev file is split by *question* (all rows of a question on one side, as the official
  train and dev sets come from different SQuAD articles), ``QNLI_TRAIN_FRACTION`` of the questions to
  training, seed ``SPLIT_SEED``; the task trains on the train part and is scored on the test part.
- **SQuAD v1.1**: the dev file is split by *article* (title): ``Normans`` and ``Rhine`` (the articles of
  ``squad/v2.0/dev-partial``) and further articles drawn with ``SPLIT_SEED`` up to
  ``SQUAD_HELD_OUT_FRACTION`` of the articles are held out for scoring; training uses the rest.
- **SQuAD v2.0**: scored on the real v2.0 questions of the held-out articles (with ``dev-partial``:
  Normans and Rhine); trained on the v1.1 training articles plus *constructed* unanswerable questions
  (:func:`construct_unanswerable`: a training question paired with another paragraph of its own article
  that does not contain its answer). These are easier than SQuAD 2.0's adversarially written ones; the
  provenance says they are constructed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError
from validation.data.glue import GlueSplit, find_glue_file, load_glue, missing_file_message, task_spec
from validation.data.provenance import file_record
from validation.data.squad import SquadExample, load_squad

#: seed of every fixed split below (recorded in the provenance)
SPLIT_SEED = 0
#: fraction of QNLI dev questions (with all their rows) that go to training when no train file exists
QNLI_TRAIN_FRACTION = 0.8
#: GLUE tasks whose missing train file is replaced by a split of their dev file
DEV_SPLIT_TASKS: tuple[str, ...] = ("qnli",)
#: articles never trained on: those of squad/v2.0/dev-partial, scored by squad_v2
SQUAD_FORCED_HELD_OUT: tuple[str, ...] = ("Normans", "Rhine")
#: fraction of SQuAD v1.1 dev articles held out for scoring (the forced ones included)
SQUAD_HELD_OUT_FRACTION = 0.2
#: constructed unanswerable questions per answerable training question (0.5: one third unanswerable)
SQUAD_NEGATIVE_RATIO = 0.5

_OFFICIAL_NOTE = "official train file, scored on the official dev file"


# ------------------------------------------------------------------------------------------- GLUE
def split_glue_dev(
    dev: GlueSplit, *, train_fraction: float = QNLI_TRAIN_FRACTION, seed: int = SPLIT_SEED
) -> tuple[GlueSplit, GlueSplit]:
    """Split a GLUE dev split into (train part, test part) by first sentence (the question for QNLI).

    All rows sharing ``text_a`` go to the same side. ``round(train_fraction * n_groups)`` groups, drawn by
    ``numpy.random.default_rng(seed).permutation`` over the groups in order of first appearance, form the
    train part; rows keep their file order in both parts.

    Returns
    -------
    (GlueSplit, GlueSplit)
        Split names ``"train"`` and ``dev.split``; ``protocol`` names the split, its seed and sizes.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    groups: dict[str, int] = {}
    gid = np.array([groups.setdefault(a, len(groups)) for a in dev.text_a], dtype=np.int64)
    n_groups = len(groups)
    n_train_groups = int(round(train_fraction * n_groups))
    if not 0 < n_train_groups < n_groups:
        raise InvalidInputError(f"{dev.task} dev has {n_groups} distinct first sentences: too few to split")
    perm = np.random.default_rng(seed).permutation(n_groups)
    in_train = np.zeros(n_groups, dtype=bool)
    in_train[perm[:n_train_groups]] = True
    rows_train = np.flatnonzero(in_train[gid])
    rows_test = np.flatnonzero(~in_train[gid])
    pct = int(round(100 * train_fraction))
    common = {
        "name": "dev_split",
        "note": (
            f"{dev.task}: dev file split {pct}/{100 - pct} by question with seed {seed}, "
            "not the official train/dev"
        ),
        "train_fraction": float(train_fraction),
        "seed": int(seed),
        "group_by": "text_a (question)",
        "n_train": int(rows_train.size),
        "n_test": int(rows_test.size),
        "n_train_groups": n_train_groups,
        "n_test_groups": n_groups - n_train_groups,
        "of": len(dev),
    }

    def part(rows: np.ndarray, split: str, name: str) -> GlueSplit:
        return replace(
            dev,
            split=split,
            text_a=[dev.text_a[i] for i in rows],
            text_b=None if dev.text_b is None else [dev.text_b[i] for i in rows],
            labels=dev.labels[rows],
            idx=dev.idx[rows],
            subset={},
            protocol={**common, "part": name},
        )

    return part(rows_train, "train", "train"), part(rows_test, dev.split, "test")


def _dev_split_applies(spec: Any, root: Path | None) -> bool:
    """Whether :func:`glue_task_splits` splits the local dev file (no train file, every dev file there)."""
    return (
        spec.name in DEV_SPLIT_TASKS
        and root is not None
        and find_glue_file(spec.name, "train", root) is None
        and all(find_glue_file(spec.name, s, root) is not None for s in spec.eval_splits)
    )


def glue_files(task: str, data_dir: str | Path) -> dict[str, Path]:
    """The local files :func:`glue_task_splits` reads for ``task`` under ``data_dir``, by split name.

    Local files only: the hub, which :func:`glue_task_splits` falls back to when a file is missing and the
    machine is online, is not asked (a launch preflight on an offline GPU host).

    Raises
    ------
    ConfigError
        A file is missing (the message :func:`validation.data.glue.load_glue` gives), or ``task`` is not
        a GLUE task.
    """
    spec = task_spec(task)
    root = Path(data_dir)
    splits = spec.eval_splits if _dev_split_applies(spec, root) else ("train", *spec.eval_splits)
    out: dict[str, Path] = {}
    for split in splits:
        path = find_glue_file(spec.name, split, root)
        if path is None:
            raise ConfigError(f"GLUE {spec.name}/{split}: {missing_file_message(spec.name, split, root)}")
        out[split] = path
    return out


def glue_task_splits(task: str, data_dir: str | Path | None = None) -> tuple[GlueSplit, dict[str, GlueSplit]]:
    """Training split and evaluation splits of a GLUE task.

    The official train file when it exists locally (or on the hub through :func:`load_glue`); for the
    tasks of :data:`DEV_SPLIT_TASKS` with only a local dev file, :func:`split_glue_dev` of it (scored on
    the test part, under the evaluation split's usual name). Every returned split carries a
    ``protocol`` saying which.

    Returns
    -------
    (train, {eval split name: split})
    """
    spec = task_spec(task)
    root: Path | None = Path(data_dir) if data_dir is not None else None
    if root is None:
        from validation.data import default_data_dir

        try:
            root = default_data_dir()
        except ConfigError:
            root = None
    if _dev_split_applies(spec, root):
        (eval_name,) = spec.eval_splits  # the tasks of DEV_SPLIT_TASKS have one dev file
        dev = load_glue(spec.name, eval_name, data_dir=root, source="local")
        train, test = split_glue_dev(dev)
        return train, {eval_name: test}
    official = {"name": "official", "note": _OFFICIAL_NOTE}
    train = replace(load_glue(spec.name, "train", data_dir=data_dir), protocol=dict(official))
    evals = {
        s: replace(load_glue(spec.name, s, data_dir=data_dir), protocol=dict(official))
        for s in spec.eval_splits
    }
    return train, evals


# ------------------------------------------------------------------------------------------ SQuAD
@dataclass(frozen=True)
class ArticleSplit:
    """A split of SQuAD articles (titles) into training and held-out sets.

    Attributes
    ----------
    train_titles, held_out_titles : tuple of str
        Disjoint, sorted.
    seed : int
    held_out_fraction : float
    forced_held_out : tuple of str
        Titles held out whatever the draw (those present in the file).
    """

    train_titles: tuple[str, ...]
    held_out_titles: tuple[str, ...]
    seed: int
    held_out_fraction: float
    forced_held_out: tuple[str, ...]


def split_articles(
    examples: Sequence[SquadExample],
    *,
    held_out_fraction: float = SQUAD_HELD_OUT_FRACTION,
    seed: int = SPLIT_SEED,
    forced_held_out: Sequence[str] = SQUAD_FORCED_HELD_OUT,
) -> ArticleSplit:
    """Split the articles of ``examples`` by title.

    ``max(len(forced), round(held_out_fraction * n_titles))`` titles are held out: the forced titles
    present in ``examples``, plus titles drawn from the sorted remaining ones with
    ``numpy.random.default_rng(seed).permutation``. The split depends only on the set of titles.
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise ConfigError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    titles = sorted({e.title for e in examples})
    forced = tuple(sorted(t for t in set(forced_held_out) if t in titles))
    rest = [t for t in titles if t not in forced]
    n_held = max(len(forced), int(round(held_out_fraction * len(titles))))
    n_draw = n_held - len(forced)
    if n_draw >= len(rest):
        raise InvalidInputError(
            f"{len(titles)} articles: too few to hold out {n_held} and still train on some"
        )
    perm = np.random.default_rng(seed).permutation(len(rest))
    drawn = {rest[i] for i in perm[:n_draw]}
    held = tuple(sorted(set(forced) | drawn))
    train = tuple(t for t in titles if t not in held)
    return ArticleSplit(train, held, int(seed), float(held_out_fraction), forced)


def _contains(haystack: tuple[str, str], needles: Sequence[tuple[str, str]]) -> bool:
    """Does any needle occur in the haystack, raw (case-insensitive) or after SQuAD answer normalisation?

    Both are given as ``(lower-cased text, normalised text)``; normalised text matches on word boundaries.
    """
    return any(raw in haystack[0] or (norm and f" {norm} " in haystack[1]) for raw, norm in needles)


def construct_unanswerable(
    examples: Sequence[SquadExample], *, ratio: float = SQUAD_NEGATIVE_RATIO, seed: int = SPLIT_SEED
) -> list[SquadExample]:
    """Unanswerable questions made by pairing answerable questions with another paragraph of their article.

    Questions are visited in the order ``numpy.random.default_rng(seed).permutation``; each gets a
    paragraph drawn (same generator) among the other paragraphs of its article that contain none of its
    gold answers (checked raw, case-insensitive, and after SQuAD answer normalisation); questions with no
    such paragraph are passed over. Each question is used at most once.

    Parameters
    ----------
    examples : sequence of SquadExample
        Answerable questions (unanswerable ones are ignored).
    ratio : float
        Constructed questions per answerable question, in [0, 1]: ``round(ratio * n_answerable)`` are
        made (0.5 gives one third unanswerable in ``examples + result``, as in SQuAD 2.0's train set).
    seed : int

    Returns
    -------
    list of SquadExample
        ``is_impossible=True``, no answers, id ``"<question id>-constructed"``.

    Raises
    ------
    InvalidInputError
        If fewer questions than requested have a usable paragraph.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"ratio of constructed unanswerable questions must be in [0, 1], got {ratio}")
    answerable = [e for e in examples if not e.is_impossible and e.answers]
    want = int(round(ratio * len(answerable)))
    paragraphs: dict[str, list[str]] = {}
    for e in answerable:
        ctxs = paragraphs.setdefault(e.title, [])
        if e.context not in ctxs:
            ctxs.append(e.context)
    from validation.finetune.metrics import normalize_answer

    forms = {c: (c.lower(), f" {normalize_answer(c)} ") for ctxs in paragraphs.values() for c in ctxs}
    rng = np.random.default_rng(seed)
    out: list[SquadExample] = []
    for i in rng.permutation(len(answerable)):
        if len(out) == want:
            break
        e = answerable[int(i)]
        needles = [(a.lower(), normalize_answer(a)) for a in e.answers]
        usable = [c for c in paragraphs[e.title] if c != e.context and not _contains(forms[c], needles)]
        if not usable:
            continue
        ctx = usable[int(rng.integers(len(usable)))]
        out.append(SquadExample(f"{e.id}-constructed", e.title, ctx, e.question, (), (), True))
    if len(out) < want:
        raise InvalidInputError(
            f"only {len(out)} of {want} requested unanswerable questions could be constructed"
        )
    return out


@dataclass
class SquadSplits:
    """Training and evaluation questions of a SQuAD task, with their JSON-ready provenance.

    Attributes
    ----------
    train, eval : list of SquadExample
    train_info, eval_info : dict
        ``sources`` (list of ``{"file", "sha256"}``), ``protocol`` (``name``, ``note`` and the split's
        parameters and sizes), ``n`` and ``n_unanswerable``.
    """

    train: list[SquadExample]
    eval: list[SquadExample]
    train_info: dict[str, Any]
    eval_info: dict[str, Any]


def _find(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_file()), None)


def _dev_file(root: Path, version: str) -> Path:
    from validation.data.squad import _DEFAULT_FILES

    found = _find(root, _DEFAULT_FILES[version])
    if found is None:
        raise ConfigError(
            f"no SQuAD v{version} dev file under the data root; tried {_DEFAULT_FILES[version]}"
        )
    return found


def _train_file(root: Path, version: str) -> Path | None:
    return _find(root, [f"squad/v{version}/train-v{version}.json{gz}" for gz in ("", ".gz")])


def squad_files(version: str, data_dir: str | Path) -> dict[str, Path]:
    """The local files :func:`squad_task_splits` reads for SQuAD ``version`` under ``data_dir``.

    Returns
    -------
    dict
        ``{"train", "dev"}`` (the version's official files) or, without a train file, ``{"v1.1 dev"}``
        (split by article) plus ``"v2.0 dev"`` for version 2.0.

    Raises
    ------
    ConfigError
        A file is missing (``no SQuAD v<version> dev file under the data root; tried ...``) or the
        version is not ``"1.1"`` / ``"2.0"``.
    """
    version = version.removeprefix("v")
    if version not in ("1.1", "2.0"):
        raise ConfigError(f"SQuAD version must be '1.1' or '2.0', got {version!r}")
    root = Path(data_dir)
    train_file = _train_file(root, version)
    if train_file is not None:
        return {"train": train_file, "dev": _dev_file(root, version)}
    files = {"v1.1 dev": _dev_file(root, "1.1")}
    if version == "2.0":
        files["v2.0 dev"] = _dev_file(root, "2.0")
    return files


def _info(
    files: Sequence[Path], root: Path, examples: Sequence[SquadExample], protocol: dict[str, Any]
) -> dict[str, Any]:
    return {
        "sources": [file_record(f, root) for f in files],
        "protocol": protocol,
        "n": len(examples),
        "n_unanswerable": sum(e.is_impossible for e in examples),
        "n_articles": len({e.title for e in examples}),
    }


def squad_task_splits(
    version: str,
    data_dir: str | Path | None = None,
    *,
    held_out_fraction: float = SQUAD_HELD_OUT_FRACTION,
    seed: int = SPLIT_SEED,
    negative_ratio: float = SQUAD_NEGATIVE_RATIO,
) -> SquadSplits:
    """Training and evaluation questions of SQuAD ``version`` (``"1.1"`` or ``"2.0"``).

    With ``squad/v<version>/train-v<version>.json[.gz]`` under the data root: that file for training and
    the version's dev file for scoring (protocol ``official``). Otherwise the article split of the v1.1
    dev file described in the module docstring (protocol ``dev_article_split``); v2.0 then needs both the
    v1.1 dev file and a v2.0 dev file (``dev-v2.0.json[.gz]`` or ``dev-partial.json.gz``) and is scored on
    the v2.0 questions of the held-out articles only.
    """
    version = version.removeprefix("v")
    if data_dir is None:
        from validation.data import default_data_dir

        root = default_data_dir()
    else:
        root = Path(data_dir)
    files = squad_files(version, root)  # every file first: a missing one fails before anything is read
    if "train" in files:
        train_file, dev_file = files["train"], files["dev"]
        train = load_squad(train_file, version=version)
        dev = load_squad(dev_file, version=version)
        official = {"name": "official", "note": _OFFICIAL_NOTE}
        return SquadSplits(
            train, dev, _info([train_file], root, train, official), _info([dev_file], root, dev, official)
        )
    v1_file = files["v1.1 dev"]
    v1 = load_squad(v1_file, version="1.1")
    split = split_articles(v1, held_out_fraction=held_out_fraction, seed=seed)
    train_titles = set(split.train_titles)
    held = set(split.held_out_titles)
    train = [e for e in v1 if e.title in train_titles]
    v1_held = [e for e in v1 if e.title in held]
    base = {
        "name": "dev_article_split",
        "seed": split.seed,
        "held_out_fraction": split.held_out_fraction,
        "forced_held_out": list(split.forced_held_out),
        "train_titles": list(split.train_titles),
        "held_out_titles": list(split.held_out_titles),
        "n_train_articles": len(split.train_titles),
        "n_held_out_articles": len(split.held_out_titles),
        "n_train_questions": len(train),
        "n_held_out_questions": len(v1_held),
    }
    pct = int(round(100 * held_out_fraction))
    split_note = (
        f"SQuAD v1.1 dev file split by article with seed {seed}: {len(split.train_titles)} articles "
        f"({len(train)} questions) for training, {len(split.held_out_titles)} held out "
        f"({len(v1_held)} questions; about {pct}% of the articles, {', '.join(split.forced_held_out)} "
        "always held out); not the official train/dev"
    )
    if version == "1.1":
        protocol = {**base, "note": split_note}
        return SquadSplits(
            train,
            v1_held,
            _info([v1_file], root, train, {**protocol, "part": "train"}),
            _info([v1_file], root, v1_held, {**protocol, "part": "held_out"}),
        )
    v2_file = files["v2.0 dev"]
    v2 = load_squad(v2_file, version="2.0")
    evals = [e for e in v2 if e.title in held]
    if not evals:
        raise InvalidInputError(
            f"the SQuAD v2.0 dev file has no question of the held-out articles {sorted(held)}"
        )
    leaked = sorted({e.title for e in v2 if e.title in train_titles})
    negatives = construct_unanswerable(train, ratio=negative_ratio, seed=seed)
    train_v2 = train + negatives
    protocol = {
        **base,
        "note": (
            f"{split_note}. squad_v2 trains on the training articles plus {len(negatives)} CONSTRUCTED "
            "unanswerable questions (a training question paired with another paragraph of its article "
            f"that does not contain its answer; ratio {negative_ratio}, seed {seed}) and is scored on the "
            f"real v2.0 questions of the held-out articles ({len(evals)} questions, "
            f"{sum(e.is_impossible for e in evals)} unanswerable)"
        ),
        "negative_ratio": float(negative_ratio),
        "n_constructed_unanswerable": len(negatives),
        "v2_dev_articles_skipped_as_trained_on": leaked,
    }
    return SquadSplits(
        train_v2,
        evals,
        _info([v1_file], root, train_v2, {**protocol, "part": "train"}),
        _info([v2_file], root, evals, {**protocol, "part": "held_out"}),
    )


__all__ = [
    "DEV_SPLIT_TASKS",
    "QNLI_TRAIN_FRACTION",
    "SPLIT_SEED",
    "SQUAD_FORCED_HELD_OUT",
    "SQUAD_HELD_OUT_FRACTION",
    "SQUAD_NEGATIVE_RATIO",
    "ArticleSplit",
    "SquadSplits",
    "construct_unanswerable",
    "glue_files",
    "glue_task_splits",
    "split_articles",
    "split_glue_dev",
    "squad_files",
    "squad_task_splits",
]
