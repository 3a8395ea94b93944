"""Rendering is a pure function of report.json: deterministic bytes, self-contained HTML, honest gaps."""

from __future__ import annotations

import copy
import json
import re

from validation.report.build import render, render_all
from validation.report.figures import FIGURES, make_figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _json_round_trip(report: dict) -> dict:
    return json.loads(json.dumps(report))


def test_render_is_deterministic_and_pure(report):
    before = copy.deepcopy(report)
    md1, html1 = render(report)
    md2, html2 = render(_json_round_trip(report))
    assert md1 == md2
    assert html1 == html2
    assert report == before  # rendering does not modify its input


def test_figures_are_byte_stable_pngs(report):
    a = make_figures(report)
    b = make_figures(_json_round_trip(report))
    assert set(a) == {"estimator_accuracy", "theory_margins", "model_id_profile", "grid_scores"}
    for stem, png in a.items():
        assert png.startswith(PNG_MAGIC)
        assert png == b[stem], stem
        assert b"matplotlib" not in png  # no Software/version metadata that would change with upgrades


def test_html_is_self_contained(report):
    _, html, figures = render_all(report)
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["'](https?:|//|figures/)""", html)
    assert html.count("data:image/png;base64,") == len(figures)
    assert "<script" not in html


def test_markdown_links_every_drawn_figure(report):
    md, _, figures = render_all(report)
    for stem in figures:
        assert f"(figures/{stem}.png)" in md
    # the trajectory section did not run: it says so with its reason, and draws nothing
    assert "rank_trajectories" not in figures
    assert "no GeoLoRA cell in this grid" in md


def test_missing_results_never_render_as_zero(report):
    md, html = render(report)
    # the failed GeoLoRA cell shows its reason, not a score
    assert "failed: RuntimeError: boom" in md
    row = next(line for line in md.splitlines() if line.startswith("| stsb | geolora"))
    assert "not run" in row and " 0 " not in row and "0.0" not in row
    # the DANCo profile that errored is listed with its reason
    assert "DegenerateDataError: test" in md
    # skdim/danco cells that did not run
    assert "skdim not installed (test)" in md


def test_paper_numbers_are_labelled_with_model_and_availability(report):
    md, _ = render(report)
    assert "DeBERTaV3-base" in md
    assert "87.92" in md
    assert "not available offline" in md


def test_all_sections_and_environment_present(report):
    md, _ = render(report)
    for heading in (
        "1. The paper",
        "2. Estimator accuracy",
        "3. Theory",
        "4. Per-layer",
        "5. Fine-tuning",
        "6. Rank trajectories",
        "7. Environment",
    ):
        assert f"## {heading}" in md
    assert "ab" * 32 in md  # sha256 of the weights
    assert "gelora report --profile quick --out X" in md
    for _stem, (_fn, caption) in FIGURES.items():
        assert caption.endswith(".")


def test_not_run_section_renders_reason_and_no_figure(f):
    r = f.make_report(estimators=f.sec(None, "not run", "gelora.estimators is not available (test)"))
    md, _, figures = render_all(r)
    assert "estimator accuracy: not run — gelora.estimators is not available (test)" in md
    assert "estimator_accuracy" not in figures
