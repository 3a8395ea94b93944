"""Time and peak memory of the GeLoRA preprocessing (``gelora ranks``), stage by stage.

:func:`measure_ranks_cost` runs the same code as ``gelora ranks`` (:func:`gelora.pipeline.compute_gelora_ranks`
followed by ``to_lora_config``) ``repeats`` times in one process and reports, per repeat,

``load_s``
    model load (pretrained) or build (``config:`` models, random weights) and move to the device;
``forward_s``
    tokenisation of every text plus the forward passes that produce the sampled hidden states;
``estimation_s``
    intrinsic-dimension estimation of every hidden state (TwoNN by default), including the layer screening;
``ranks_config_s``
    the rest of the pipeline (target-module table, unit costs, rank rule) plus building the
    ``peft.LoraConfig``;
``total_s``
    wall time of the whole repeat (the four stages plus small glue, so the stages sum to at most it).

Stages are bracketed by ``torch.cuda.synchronize`` on CUDA. Repeat 0 is *cold* (it pays CUDA context
creation, kernel selection and the first read of the weights from disk); later repeats are *warm*.
Peak memory: ``torch.cuda.max_memory_allocated`` (reset at the start of each repeat) and the process's
peak resident set size (``VmHWM``; reset per repeat through ``/proc/self/clear_refs`` where Linux allows it,
otherwise the process-wide maximum so far, which the field ``rss_peak_scope`` states).

Models: ``"bundled"`` (the pretrained all-MiniLM-L6-v2 encoder), any name or path
:func:`gelora.models.load_model` accepts, or ``"config:bert-L<layers>-H<hidden>[-A<heads>][-I<intermediate>]"``:
a ``BertModel`` built from a ``BertConfig`` with random weights and the bundled tokenizer (heads default
``hidden / 64``, intermediate ``4 * hidden``). Random weights give meaningless ranks; those rows are for
timing only and say so (``"weights": "random (timing only)"``).

Optionally (``finetune_steps > 0``) the script also times LoRA fine-tuning steps of the same model with the
GeLoRA config just computed (a linear regression head on the first token, MSE loss, AdamW, the same batch
size and truncation) and extrapolates one fine-tuning run of ``finetune_epochs`` epochs over the texts, to
put the preprocessing cost in proportion (the goal of issue 6: under 2 % of one fine-tuning run).

Command line (prints a Markdown table, writes JSON)::

    python -m validation.estimators.ranks_bench --models bundled,config:bert-L24-H1024 --device cuda --dtype bf16 \
        --task stsb --out ranks_bench.json
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gelora._io import atomic_write_json
from gelora.errors import ConfigError, GeLoRAError

#: ``config:bert-L24-H1024`` and friends
_CONFIG_RE = re.compile(r"^config:bert-L(?P<L>\d+)-H(?P<H>\d+)(?:-A(?P<A>\d+))?(?:-I(?P<I>\d+))?$")

STAGES: tuple[str, ...] = ("load_s", "forward_s", "estimation_s", "ranks_config_s")


# ------------------------------------------------------------------------------------------ helpers
def parse_config_model(name: str) -> dict[str, int]:
    """Parse ``"config:bert-L<layers>-H<hidden>[-A<heads>][-I<intermediate>]"`` into BertConfig sizes.

    Returns
    -------
    dict
        ``num_hidden_layers``, ``hidden_size``, ``num_attention_heads`` (default ``hidden // 64``, at least
        1) and ``intermediate_size`` (default ``4 * hidden``).

    Raises
    ------
    ConfigError
        If the name does not match, a size is zero, or the hidden size is not divisible by the heads.
    """
    m = _CONFIG_RE.match(name)
    if m is None:
        raise ConfigError(
            f"config model {name!r} not understood; expected 'config:bert-L<layers>-H<hidden>"
            "[-A<heads>][-I<intermediate>]', e.g. 'config:bert-L24-H1024'"
        )
    layers, hidden = int(m["L"]), int(m["H"])
    heads = int(m["A"]) if m["A"] else max(1, hidden // 64)
    inter = int(m["I"]) if m["I"] else 4 * hidden
    if min(layers, hidden, heads, inter) < 1:
        raise ConfigError(f"config model {name!r}: every size must be positive")
    if hidden % heads:
        raise ConfigError(f"config model {name!r}: hidden size {hidden} is not divisible by {heads} heads")
    return {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": inter,
    }


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux ``clear_refs`` value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_peak_mib() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(usage) / (1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def environment(device: Any) -> dict[str, Any]:
    """Versions, device name, CPU count, thread count and load average (JSON-serialisable)."""
    import torch
    import transformers

    dev = device if not isinstance(device, str) else torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(dev),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": _load_average(),
        "platform": platform.platform(),
    }


def build_model(model: str, *, device: Any, dtype: Any, seed: int = 0) -> tuple[Any, str]:
    """Load or build a model for :func:`measure_ranks_cost`.

    Parameters
    ----------
    model : str
        ``"bundled"``, a name/path for :func:`gelora.models.load_model`, or a ``config:`` name
        (:func:`parse_config_model`).
    device, dtype
        As for :func:`gelora.models.load_model`.
    seed : int
        Seed of the random initialisation of ``config:`` models.

    Returns
    -------
    (LoadedModel, str)
        The wrapped model and a description of its weights (``"pretrained"`` or
        ``"random (timing only)"``).
    """
    import torch

    from gelora.models import load_model, parse_dtype, resolve_device, resolve_model_name, wrap_model

    if not model.startswith("config:"):
        return load_model(model, device=device, dtype=dtype), "pretrained"
    sizes = parse_config_model(model)
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name("bundled"), local_files_only=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        num_hidden_layers=sizes["num_hidden_layers"],
        hidden_size=sizes["hidden_size"],
        num_attention_heads=sizes["num_attention_heads"],
        intermediate_size=sizes["intermediate_size"],
    )
    torch.manual_seed(seed)
    net: Any = BertModel(config, add_pooling_layer=False)
    torch_dtype = parse_dtype(dtype)
    net = net.to(device=resolve_device(device), dtype=torch_dtype or torch.float32)
    return wrap_model(net, tokenizer, name=model), "random (timing only)"


def _resolve_texts(texts: Sequence[str] | None, task: str | None) -> tuple[list[str], str]:
    if texts is not None and task is not None:
        raise ConfigError("give texts or task, not both")
    if texts is not None:
        return list(texts), "user texts"
    if task is not None:
        from validation.data.glue import load_glue

        split = load_glue(task, "train")
        return split.joined_texts(), f"GLUE {task} train ({split.source})"
    from gelora.pipeline import DEFAULT_TEXTS_RESOURCE, default_texts

    return default_texts(), f"gelora:{DEFAULT_TEXTS_RESOURCE}"


def _count_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------------------------ fine-tuning
def time_finetune_steps(
    loaded: Any,
    lora_config: Any,
    texts: Sequence[str],
    *,
    steps: int,
    batch_size: int = 32,
    max_length: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """Time LoRA training steps of ``loaded.model`` with ``lora_config``.

    A linear head on the first token's last hidden state regresses seeded standard-normal targets (MSE);
    AdamW (lr 1e-4) updates the LoRA parameters and the head. Batches are ``batch_size`` consecutive texts
    (cycling), truncated to ``max_length`` tokens. One untimed warm-up step precedes the ``steps`` timed
    ones. The model is wrapped by ``peft`` in place: do not reuse it afterwards.

    Returns
    -------
    dict
        ``step_s`` (median seconds per optimiser step), ``step_s_all`` (every timed step), ``steps``,
        ``batch_size``, ``max_length``, ``trainable_params``, and on CUDA ``cuda_peak_allocated_mib``
        (peak over the training steps).
    """
    import torch
    from peft import get_peft_model

    if steps < 1:
        raise ConfigError(f"finetune steps must be >= 1, got {steps}")
    model = get_peft_model(loaded.model, lora_config)
    device = loaded.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    hidden = int(loaded.model.config.hidden_size)
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(hidden, 1).to(device=device, dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    texts = list(texts)
    times: list[float] = []
    for step in range(steps + 1):
        start = (step * batch_size) % len(texts)
        batch = [texts[(start + i) % len(texts)] for i in range(batch_size)]
        enc = loaded.tokenizer(
            batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        target = torch.randn(batch_size, 1, generator=gen).to(device)
        _sync(device)
        t0 = time.perf_counter()
        inputs = {k: v.to(device) for k, v in enc.items()}
        outputs = model(**inputs, return_dict=True)
        pred = head(outputs.last_hidden_state[:, 0].float())
        loss = torch.nn.functional.mse_loss(pred, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if step > 0:
            times.append(time.perf_counter() - t0)
    out: dict[str, Any] = {
        "step_s": float(np.median(times)),
        "step_s_all": times,
        "steps": steps,
        "batch_size": batch_size,
        "max_length": max_length,
        "trainable_params": int(sum(p.numel() for p in params)),
    }
    if device.type == "cuda":
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# ------------------------------------------------------------------------------------------ bench
def measure_ranks_cost(
    model: str = "bundled",
    *,
    device: Any = "cpu",
    dtype: Any = None,
    texts: Sequence[str] | None = None,
    task: str | None = None,
    max_tokens: int = 4096,
    n_texts: int | None = None,
    estimator: str = "twonn",
    repeats: int = 2,
    seed: int = 0,
    batch_size: int = 32,
    max_length: int = 128,
    min_samples: int | None = None,
    finetune_steps: int = 0,
    finetune_epochs: float = 3.0,
) -> dict[str, Any]:
    """Measure wall time per stage and peak memory of the GeLoRA preprocessing of one model.

    Parameters
    ----------
    model : str
        ``"bundled"``, ``"config:bert-L24-H1024"`` (random weights, timing only; see module docstring), or
        any name/path :func:`gelora.models.load_model` accepts.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``...
    dtype : {"fp32", "fp16", "bf16"} or None
        Model dtype (``None``: fp32). Hidden states are estimated in float32 whatever it is.
    texts : sequence of str, optional
        Input texts. Default: the texts of GLUE ``task`` (``load_glue(task).joined_texts()``, train split)
        when ``task`` is given, else the package's 300 default sentences.
    task : str, optional
        GLUE task name (e.g. ``"stsb"``); exclusive with ``texts``.
    max_tokens : int
        Rows per hidden state (the token budget, default 4096 as in ``gelora ranks``).
    n_texts : int, optional
        Seeded subset of the texts given to the pipeline (``gelora ranks --n-texts``); ``None`` uses all.
        Tokens are sampled uniformly over the texts used, so with many short texts the forward pass
        touches most of them; a subset bounds that cost. Fine-tuning is still extrapolated over all texts.
    estimator : str
        ID estimator name (``"twonn"`` default).
    repeats : int
        Number of full runs (load + ranks + config) in this process; repeat 0 is cold, the rest warm.
    seed : int
        Seed of the token sample, the estimator and the random weights of ``config:`` models.
    batch_size, max_length : int
        Forward-pass batch size (texts) and truncation length (tokens), as in ``gelora ranks``.
    min_samples : int, optional
        Passed to the pipeline (default: the pipeline's 100); lower it only for tiny test inputs.
    finetune_steps : int
        If positive, time this many LoRA training steps after the last repeat
        (:func:`time_finetune_steps`) and extrapolate one fine-tuning run.
    finetune_epochs : float
        Epochs of the extrapolated fine-tuning run over the given texts (default 3).

    Returns
    -------
    dict
        ``model``, ``weights``, ``model_type``, ``n_layers`` (transformer blocks), ``hidden_size``,
        ``n_params``, ``device``, ``dtype``, ``estimator``, ``data`` (source, number of texts),
        ``n_rows`` (rows per hidden state), ``max_tokens``, ``ranks``, ``rule_ranks``, ``dimensions``,
        ``runs`` (one dict per repeat: ``repeat``, ``cold``, the stage times in seconds, ``total_s``,
        ``cuda_peak_allocated_mib`` (CUDA only), ``rss_peak_mib``, ``rss_peak_scope``), ``cold`` and
        ``warm`` (the first and the last run), ``seed``, ``environment``; with fine-tuning, ``finetune``
        (step timing, ``run_estimate_s`` and ``preprocessing_fraction`` = warm total / run estimate).

    Raises
    ------
    ConfigError
        Bad ``repeats``, a malformed ``config:`` name, ``texts`` together with ``task``.
    ModelLoadError, NotEnoughSamplesError, DegenerateDataError
        From the pipeline.
    """
    import torch

    from gelora.models import resolve_device
    from gelora.pipeline import DEFAULT_MIN_SAMPLES, compute_gelora_ranks

    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, got {repeats!r}")
    if not isinstance(finetune_steps, int) or finetune_steps < 0:
        raise ConfigError(f"finetune_steps must be a non-negative integer, got {finetune_steps!r}")
    if model.startswith("config:"):
        parse_config_model(model)  # fail before any work
    dev = resolve_device(device)
    text_list, source = _resolve_texts(texts, task)
    min_samples = DEFAULT_MIN_SAMPLES if min_samples is None else min_samples
    load_at_start = _load_average()

    runs: list[dict[str, Any]] = []
    result: Any = None
    loaded: Any = None
    weights = ""
    lora_config: Any = None
    for rep in range(repeats):
        loaded = result = lora_config = None
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        scope = "repeat" if _reset_rss_peak() else "process"
        _sync(dev)
        t_start = time.perf_counter()
        loaded, weights = build_model(model, device=dev, dtype=dtype, seed=seed)
        _sync(dev)
        t_load = time.perf_counter() - t_start
        t0 = time.perf_counter()
        result = compute_gelora_ranks(
            loaded,
            text_list,
            estimator=estimator,
            max_tokens=max_tokens,
            n_texts=n_texts,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
            min_samples=min_samples,
            data_source=source,
        )
        _sync(dev)
        t_pipeline = time.perf_counter() - t0
        t0 = time.perf_counter()
        lora_config = result.to_lora_config()
        t_config = time.perf_counter() - t0
        _sync(dev)
        total = time.perf_counter() - t_start
        forward_s = float(result.timings["forward_s"])
        estimation_s = float(result.timings["estimation_s"])
        run: dict[str, Any] = {
            "repeat": rep,
            "cold": rep == 0,
            "load_s": t_load,
            "forward_s": forward_s,
            "estimation_s": estimation_s,
            "ranks_config_s": max(t_pipeline - forward_s - estimation_s, 0.0) + t_config,
            "total_s": total,
            "rss_peak_mib": _rss_peak_mib(),
            "rss_peak_scope": scope,
        }
        if dev.type == "cuda":
            run["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        runs.append(run)

    assert loaded is not None and result is not None
    config = loaded.model.config
    out: dict[str, Any] = {
        "model": model,
        "weights": weights,
        "model_type": loaded.model_type,
        "n_layers": int(loaded.n_blocks),
        "hidden_size": int(config.hidden_size),
        "n_params": _count_params(loaded.model),
        "device": str(dev),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "estimator": estimator,
        "data": {
            "source": source,
            "n_texts": len(text_list),
            "n_texts_used": int(result.sampling["n_texts_used"]),
            "sha256": result.data["sha256"],
        },
        "n_rows": int(result.sampling["n_rows"]),
        "n_candidates": int(result.sampling["n_candidates"]),
        "max_tokens": int(max_tokens),
        "batch_size": int(batch_size),
        "max_length": int(max_length),
        "dimensions": [None if x.result is None else float(x.result.dimension) for x in result.layers],
        "rule_ranks": list(result.rule_ranks),
        "ranks": list(result.ranks),
        "lora_parameters": result.lora_parameters,
        "runs": runs,
        "cold": runs[0],
        "warm": runs[-1],
        "seed": int(seed),
        "environment": {**environment(dev), "load_average_at_start": load_at_start},
    }
    if finetune_steps > 0:
        ft = time_finetune_steps(
            loaded,
            lora_config,
            text_list,
            steps=finetune_steps,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
        )
        steps_per_epoch = math.ceil(len(text_list) / batch_size)
        ft["epochs"] = float(finetune_epochs)
        ft["n_train_texts"] = len(text_list)
        ft["run_steps"] = int(math.ceil(finetune_epochs * steps_per_epoch))
        ft["run_estimate_s"] = ft["run_steps"] * ft["step_s"]
        ft["preprocessing_fraction"] = runs[-1]["total_s"] / ft["run_estimate_s"]
        ft["preprocessing_fraction_cold"] = runs[0]["total_s"] / ft["run_estimate_s"]
        out["finetune"] = ft
    del loaded, result, lora_config
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------------ report
def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table: one row per (model, cold/warm) with stage times, memory and ranks."""
    head = (
        "| model | weights | layers x hidden | params (M) | device, dtype | texts used | rows | run | load s | forward s "
        "| estimation s | ranks+config s | total s | CUDA peak MiB | peak RSS MiB | ranks |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        rows = [("cold", r["cold"])] + ([("warm", r["warm"])] if len(r["runs"]) > 1 else [])
        for label, run in rows:
            cuda = run.get("cuda_peak_allocated_mib")
            lines.append(
                f"| {r['model']} | {r['weights']} | {r['n_layers']} x {r['hidden_size']} "
                f"| {r['n_params'] / 1e6:.1f} | {r['device']}, {r['dtype']} | {r['data']['n_texts_used']} | {r['n_rows']} | {label} "
                f"| {run['load_s']:.3f} | {run['forward_s']:.3f} | {run['estimation_s']:.3f} "
                f"| {run['ranks_config_s']:.3f} | {run['total_s']:.3f} "
                f"| {'-' if cuda is None else f'{cuda:.0f}'} | {run['rss_peak_mib']:.0f} | {r['ranks']} |"
            )
    ft_rows = [r for r in results if "finetune" in r]
    if ft_rows:
        lines += [
            "",
            "| model | LoRA step s (batch) | steps per run (epochs) | fine-tuning run estimate s "
            "| preprocessing / run (warm) | (cold) |",
            "|---|---|---|---|---|---|",
        ]
        for r in ft_rows:
            ft = r["finetune"]
            lines.append(
                f"| {r['model']} | {ft['step_s']:.4f} ({ft['batch_size']}) | {ft['run_steps']} ({ft['epochs']:g}) "
                f"| {ft['run_estimate_s']:.1f} | {100 * ft['preprocessing_fraction']:.2f} % "
                f"| {100 * ft['preprocessing_fraction_cold']:.2f} % |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m validation.estimators.ranks_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--models", default="bundled", help="comma-separated: bundled, config:bert-L24-H1024, names/paths"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1")
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="default fp32")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--task", default=None, help="GLUE task whose train texts are used (e.g. stsb)")
    src.add_argument("--data", default=None, help="text file for gelora.pipeline.load_texts")
    parser.add_argument("--text-column", default=None, help="column(s) of --data")
    parser.add_argument("--max-tokens", type=int, default=4096, help="rows per hidden state (default 4096)")
    parser.add_argument("--n-texts", type=int, default=None, help="seeded subset of the texts (default: all)")
    parser.add_argument("--estimator", default="twonn")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs per model; the first is cold (default 2)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--finetune-steps", type=int, default=0, help="time this many LoRA training steps (default 0: skip)"
    )
    parser.add_argument("--finetune-epochs", type=float, default=3.0, help="epochs of the extrapolated run")
    parser.add_argument("--out", default=None, help="write all results as JSON here (atomically)")
    args = parser.parse_args(argv)

    texts = None
    if args.data is not None:
        from gelora.pipeline import load_texts

        texts = load_texts(Path(args.data), text_column=args.text_column)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise ConfigError("--models is empty")
    results = []
    for name in models:
        results.append(
            measure_ranks_cost(
                name,
                device=args.device,
                dtype=args.dtype,
                texts=texts,
                task=args.task,
                max_tokens=args.max_tokens,
                n_texts=args.n_texts,
                estimator=args.estimator,
                repeats=args.repeats,
                seed=args.seed,
                batch_size=args.batch_size,
                max_length=args.max_length,
                finetune_steps=args.finetune_steps,
                finetune_epochs=args.finetune_epochs,
            )
        )
        if args.out:  # keep what is done if a later model fails
            atomic_write_json(args.out, {"command": sys.argv, "results": results})
    print(format_table(results))
    env = results[0]["environment"]
    print(
        f"\n{env['device_name']}; torch {env['torch']}, transformers {env['transformers']}; "
        f"{env['torch_threads']} torch threads; load average (1, 5, 15 min) at start "
        f"{env['load_average_at_start']}, at end {env['load_average_1_5_15']}"
    )
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GeLoRAError as exc:  # user errors: one clean line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
