"""The flat module paths of ``validation`` before issue 16 still import, with the names they exported.

Each entry below is the public API an old module had (its ``__all__``, or its public top-level names
where it had none), written out here so that a name lost in the move fails the test.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from validation._moved import MOVED

OLD_PUBLIC_NAMES: dict[str, list[str]] = {
    "validation.grid": ["GRID_SCHEMA", "GridOutcome", "format_summary", "run_grid", "summarise", "write_plan"],
    "validation.runner": [
        "CELL_SCHEMA", "EncodedDataset", "PROFILES", "Profile", "QA_TASKS", "cell_name", "cell_path",
        "encode_split", "failure_path", "get_profile", "is_main_process", "read_cell", "record_failure",
        "run_cell",
    ],
    "validation.methods": [
        "BUDGETED_METHODS", "BUDGET_RTOL", "DEFAULT_TARGET_MODULES", "METHODS", "MethodContext",
        "PreparedMethod", "check_budget", "count_adapter_params", "count_trainable_params", "get_method",
        "lora_budget", "make_adalora_callback", "prepare_adalora", "prepare_full", "prepare_gelora",
        "prepare_lora", "target_linear_shapes",
    ],
    "validation.metrics": [
        "PRIMARY_METRIC", "accuracy", "exact_match", "f1_binary", "glue_metrics", "matthews_corrcoef",
        "normalize_answer", "pearson", "spearman", "squad_metrics", "token_f1",
    ],
    "validation.lr_sensitivity": ["SCHEMA", "best", "collect", "main", "render_markdown"],
    "validation.geolora": [
        "BERT_TARGET_MODULES", "DEFAULT_MIN_RANK", "DEFAULT_TAU", "GeoLoRALinear", "GeoLoRAOptimizer",
        "StepRecord", "adapter_param_count", "discarded_mass", "find_geolora_layers", "inject_geolora",
        "select_ranks",
    ],
    "validation.geolora.layer": [
        "BERT_TARGET_MODULES", "DEFAULT_ALPHA", "DEFAULT_INIT_RANK", "DEFAULT_MAX_RANK", "GeoLoRALinear",
        "adapter_param_count", "find_geolora_layers", "inject_geolora",
    ],
    "validation.geolora.optim": [
        "DEFAULT_MIN_RANK", "DEFAULT_TAU", "GeoLoRAOptimizer", "StepRecord", "discarded_mass", "select_ranks",
    ],
    "validation.geolora.method": [
        "GeoLoRACallback", "RUNNER_LR_SCALE", "RUNNER_PRECONDITION", "geolora_layer_sizes",
        "match_initial_ranks", "prepare",
    ],
    "validation.geolora.bench": ["METHODS", "default_model_path", "main", "step_time_comparison"],
    "validation.geolora.plots": ["normalise_rank_trajectory", "plot_rank_trajectories"],
    "validation.geolora.probe": ["SETTINGS", "main", "run_probe"],
    "validation.estimator_accuracy": [
        "DANCO_K", "FitFn", "MLE_K", "OUR_METHODS", "PEER_METHODS", "PROFILES", "SCHEMA", "Sample",
        "benchmark_samples", "main", "run_estimator_accuracy",
    ],
    "validation.crosscompare": [
        "DEFAULT_ESTIMATOR_PARAMS", "ESTIMATORS", "SCHEMA", "SYNTHETIC_DIMS", "agreement", "main",
        "plot_profiles", "render_markdown", "run_crosscompare", "synthetic_comparison",
    ],
    "validation.id_drift": [
        "IDTrajectoryCallback", "drift_summary", "main", "plot_trajectories", "render_markdown", "run_id_drift",
    ],
    "validation.knn_profile": ["hidden_states", "main", "manifold", "phases", "profile"],
    "validation.gpu_bench": ["bench_knn", "main"],
    "validation.ranks_bench": [
        "STAGES", "build_model", "environment", "format_table", "main", "measure_ranks_cost",
        "parse_config_model", "time_finetune_steps",
    ],
    "validation.bench_ratio": ["main", "markdown_table", "ratio_rows"],
}  # fmt: skip

#: validation/theory.py became the package validation.theory, which re-exports all of these
OLD_THEORY_NAMES = [
    "ALPHA", "CALIBRATION_PATH", "DANCO_D_MAX", "FLAT_KINDS", "INVARIANCE_RTOL", "Limits", "METHODS",
    "NULL_FAMILIES", "PROFILES", "PlantedUpdateNetwork", "RANK_RTOL", "TANGENT_KINDS", "calibrate",
    "check_duplicates", "check_exact_layer", "check_invariances", "check_planted_network",
    "check_toy_transformer", "check_upper_bound", "counterexample_ceil_rounding", "counterexample_curvature",
    "counterexample_local_pca_curvature", "counterexample_mle_toy_transformer", "counterexample_noise",
    "counterexample_small_n_rule", "estimate_limits", "estimator_params", "fit_estimate", "jacobian_rank",
    "layer_bounds", "load_calibration", "main", "neighbourhood_rank", "numerical_rank", "run_theory_checks",
    "stack_jacobian", "summarise_calibration", "tangent_bases", "transformed_copies",
]  # fmt: skip

REPO = Path(__file__).resolve().parents[3]


def test_every_moved_path_is_listed() -> None:
    assert set(MOVED) == set(OLD_PUBLIC_NAMES)


@pytest.mark.parametrize("old", sorted(OLD_PUBLIC_NAMES))
def test_old_path_imports_and_exposes_its_public_names(old: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    missing = [name for name in OLD_PUBLIC_NAMES[old] if not hasattr(module, name)]
    assert not missing, f"{old} lost {missing}"
    # the names are the new modules' objects, not a stale copy of the old file
    new_names = {}
    for target in MOVED[old]:
        new_names.update(vars(importlib.import_module(target)))
    for name in OLD_PUBLIC_NAMES[old]:
        assert getattr(module, name) is new_names[name], f"{old}.{name} is not the moved object"
    assert any(issubclass(w.category, DeprecationWarning) and MOVED[old][0] in str(w.message) for w in caught)


def test_theory_package_keeps_the_old_module_names() -> None:
    theory = importlib.import_module("validation.theory")
    missing = [name for name in OLD_THEORY_NAMES if not hasattr(theory, name)]
    assert not missing, f"validation.theory lost {missing}"


@pytest.mark.parametrize(
    ("old", "option"), [("validation.bench_ratio", "--stat"), ("validation.theory", "--calibrate")]
)
def test_old_dash_m_entry_point_runs_the_moved_main(old: str, option: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", old, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ") and option in out.stdout
