"""Benchmark data for the validation suite: GLUE (eight tasks) and SQuAD v1.1/v2.0.

Data are read from a local directory laid out as ``<data_dir>/glue/<TaskDir>/{train,dev}.tsv[.gz]`` and
``<data_dir>/squad/v{1.1,2.0}/*.json[.gz]``; :func:`default_data_dir` finds it. GLUE tasks can also come
from the Hugging Face hub (``datasets.load_dataset("glue", task)``) when ``datasets`` is installed and the
machine is online.
"""

from __future__ import annotations

import os
from pathlib import Path

from gelora.errors import ConfigError

#: environment variable naming the data directory
DATA_DIR_ENV = "GELORA_DATA_DIR"


def default_data_dir() -> Path:
    """The benchmark data directory.

    Resolution order: the environment variable ``GELORA_DATA_DIR``; else ``<repo>/../shared/data`` where
    ``<repo>`` is the checkout holding this package.

    Returns
    -------
    pathlib.Path
        An existing directory.

    Raises
    ------
    ConfigError
        If neither exists (the message names both places that were tried).
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            return path
        raise ConfigError(f"{DATA_DIR_ENV}={env!r} is not a directory")
    repo = Path(__file__).resolve().parents[2]
    fallback = repo.parent / "shared" / "data"
    if fallback.is_dir():
        return fallback
    raise ConfigError(
        f"no benchmark data directory: set {DATA_DIR_ENV} or create {fallback} "
        "(expected layout: glue/<Task>/train.tsv[.gz], squad/v2.0/*.json[.gz])"
    )


from validation.data.glue import (  # noqa: E402
    GLUE_TASKS,
    GlueSplit,
    load_glue,
)
from validation.data.squad import SquadExample, load_squad  # noqa: E402

__all__ = [
    "DATA_DIR_ENV",
    "GLUE_TASKS",
    "GlueSplit",
    "SquadExample",
    "default_data_dir",
    "load_glue",
    "load_squad",
]
