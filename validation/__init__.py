"""The evidence for gelora: a house with one room per job.

finetune/     the fine-tuning suite: grid -> runner (one cell) -> methods, task families, metrics
estimators/   the estimators measured: accuracy on known manifolds, cross-comparisons, speed
theory/       Theorem 3.2 / Corollary 3.2.1 checked at scale, one module per property family
data/         raw GLUE and SQuAD loaders (shared by finetune/ and estimators/)
report/       the report: reads result files, renders Markdown / HTML / JSON
commands/     the ``gelora validate`` / ``gelora report`` subcommands

Old flat module paths (``validation.grid``, ``validation.crosscompare``, ...) still import for one
release; see :mod:`validation._moved`.
"""

from validation._moved import install as _install_moved

_install_moved()
