"""The validation report: ``gelora report`` (see ``docs/report.md``).

:func:`build_report` runs or collects each section (estimator accuracy, theory checks, the model's ID
profile, the fine-tuning grid, rank trajectories), writes ``report.json`` and renders ``report.md``,
a self-contained ``report.html`` and ``figures/*.png``; :func:`render` is a pure function of
``report.json`` and :func:`rebuild_from` re-renders a saved report byte for byte.
"""

from validation.report.build import SCHEMA, SECTIONS, build_report, rebuild_from, render

__all__ = ["SCHEMA", "SECTIONS", "build_report", "rebuild_from", "render"]
