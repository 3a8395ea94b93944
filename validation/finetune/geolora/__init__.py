"""GeoLoRA baseline (Schotthoefer et al., arXiv 2410.18720): rank-adaptive low-rank adapters.

- :mod:`validation.finetune.geolora.layer`: the adapter layer ``W0 x + scaling * U S V^T x`` and its injection.
- :mod:`validation.finetune.geolora.optim`: the integrator step (update, augmentation, global truncation).
- :mod:`validation.finetune.geolora.method`: the runner integration (``prepare`` and a Trainer callback).
- :mod:`validation.finetune.geolora.bench`: step-time comparison with peft LoRA / AdaLoRA.
- :mod:`validation.finetune.geolora.plots`: per-layer rank trajectories as a PNG.
"""

from __future__ import annotations

from .layer import (
    BERT_TARGET_MODULES,
    GeoLoRALinear,
    adapter_param_count,
    find_geolora_layers,
    inject_geolora,
)
from .optim import DEFAULT_MIN_RANK, DEFAULT_TAU, GeoLoRAOptimizer, StepRecord, discarded_mass, select_ranks

__all__ = [
    "BERT_TARGET_MODULES",
    "DEFAULT_MIN_RANK",
    "DEFAULT_TAU",
    "GeoLoRALinear",
    "GeoLoRAOptimizer",
    "StepRecord",
    "adapter_param_count",
    "discarded_mass",
    "find_geolora_layers",
    "inject_geolora",
    "select_ranks",
]
