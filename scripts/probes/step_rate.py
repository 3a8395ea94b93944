"""A model's training-step rate in one process, eager against ``torch.compile`` (issue 19: SST-2's cost).

Why: on 2026-12-01 an MPNet-base LoRA process trained SST-2 at 11.1-11.4 steps/s beside one other process
(about 90 ms a step, ``reports/gpu/mpnet_h200/sst2_timing/``), and at about the same rate with two or
three others for part of the time, so the step looks bound by the host (Python and kernel launches)
rather than by the GPU (not profiled on the GPU). A profile of the runner on the CPU with a tiny model (2 blocks, width 32) put the
project's own per-step work (callbacks, collation, gradient clipping, the fused AdamW, the scheduler,
logging) at about 2.1 ms of a 13.6-ms step (0.84 s over 400 steps); the rest is the model's forward and
backward. ``torch.compile`` fuses that work into fewer launches; this probe measures whether it pays at
SST-2's shapes before anything in the runner changes (a change would apply to every method of a task,
decided before its runs). The losses printed beside agree between the variants only in distribution: their
dropout draws differ.

What it times is the model's step alone: forward (bf16 autocast on CUDA as in the paper profile), backward,
gradient clipping and the fused AdamW on one resident batch, not the Trainer's loop, the data loader or the
host-to-device copies (about 2.1 ms of the runner's step on the CPU, above). Each (method, variant, length)
runs ``--warm`` steps (for the compiled variants: the compilation and those steps, ``compile_s``) and then
``--steps`` steps without a synchronisation between them, timed from a synchronised start to a synchronised
end; one JSON line each: ``steps_per_s``, ``ms_per_step``, ``compile_s``, ``start_unix``/``end_unix`` (the
timed window, to tell where several processes started side by side overlapped), the losses of the warm-up
steps and of the last. ``compile`` compiles for the length given (``dynamic=False``: what a runner padding to a few
fixed lengths would see, one compilation per length); ``compile_dynamic`` with ``dynamic=True`` (one
compilation for every length, as the runner's per-batch padding would need).

Example (GPU, MPNet-base assembled by scripts/gpu/mpnet_assemble.sh, GELORA_MODELS_DIR set)::

    PYTHONPATH=.:.devcarry/sitelite python3 scripts/probes/step_rate.py --model mpnet-base --device cuda \\
        --bf16 --methods lora,full,head_only --variants eager,compile,compile_dynamic --lengths 32,64 --steps 100

(MiniLM-L6, the default model, from the bundled package: ``PYTHONPATH=.:.devcarry/site``.)

CPU smoke run (tests): ``--model`` a tiny model directory, ``--device cpu --steps 2 --warm 1``.

``--count-ops`` profiles one more step after the timed ones (``torch.profiler``) and adds ``ops_per_step``
(operators that compute: aten calls with no computing aten call inside, views and metadata left out, the
kernels an eager GPU step launches, roughly, before the optimizer's foreach/fused grouping) and, on CUDA,
``kernels_per_step`` and ``kernel_us_per_step`` (the GPU time of those kernels). Why: processes that share a
GPU by time slicing cannot run faster together than the GPU runs their kernels one after another, so
``1e6 / kernel_us_per_step`` bounds their summed rate (the test of whether MPS can help, ``mps_ab.sh``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/ (adalora_step_bench)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

VARIANTS = ("eager", "compile", "compile_dynamic")


def run(method: str, variant: str, length: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement; see the module docstring for the fields."""
    import torch
    from adalora_step_bench import _build, _prepare  # type: ignore[import-not-found]

    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    torch.manual_seed(0)
    model, tok = _build(args.model, False, args.device)
    net = _prepare(method, model, tok, "warmup", args.steps, {}).model
    net.train()
    cuda = args.device.startswith("cuda")
    # the runner's optimizer: the Trainer's fused AdamW (``_fused_adam`` in the CPU profile above)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(5, tok.vocab_size, (args.batch, length), generator=g).to(args.device),
        "attention_mask": torch.ones(args.batch, length, dtype=torch.long).to(args.device),
        "labels": torch.randint(0, 2, (args.batch,), generator=g).to(args.device),
    }
    fwd = net if variant == "eager" else torch.compile(net, dynamic=variant == "compile_dynamic")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def step() -> Any:
        if cuda and args.bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fwd(**batch).loss
        else:
            loss = fwd(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    losses: list[float] = []
    sync()
    t0 = time.perf_counter()
    for _ in range(args.warm):
        losses.append(float(step()))
    sync()
    warm_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    start_unix = time.time()
    for _ in range(args.steps):
        loss = step()
    sync()
    dt = time.perf_counter() - t1
    counts = count_ops(step, cuda) if args.count_ops else {}
    return {
        "method": method,
        "variant": variant,
        "batch": args.batch,
        "length": length,
        "steps": args.steps,
        "steps_per_s": args.steps / dt,
        "ms_per_step": 1e3 * dt / args.steps,
        "compile_s": warm_s if variant != "eager" else None,
        "warm_s": warm_s,
        # wall-clock window of the timed steps: several processes' rates add up only where windows overlap
        "start_unix": start_unix,
        "end_unix": start_unix + dt,
        "losses": losses + [float(loss)],
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        **counts,
    }


#: aten operators that only view, reshape, allocate or read metadata (no kernel of their own), and
#: composites that call computing operators inside (counted through those)
NOT_COMPUTE = frozenset(
    "aten::" + n
    for n in (
        "view reshape _reshape_alias _unsafe_view transpose t numpy_T expand expand_as permute as_strided "
        "slice select unsqueeze squeeze detach alias contiguous lift_fresh empty empty_like empty_strided "
        "resolve_conj resolve_neg result_type is_nonzero item _local_scalar_dense size stride to _to_copy "
        "split split_with_sizes chunk unbind narrow flatten view_as type_as zeros_like ones_like"
    ).split()
)


def count_ops(step: Any, cuda: bool) -> dict[str, Any]:
    """Profile one call of ``step``: computing operators, and on CUDA the kernels and their GPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
        if cuda:
            torch.cuda.synchronize()
    ops = 0
    for e in prof.events():
        if not e.name.startswith("aten::") or e.name in NOT_COMPUTE or e.device_type.name != "CPU":
            continue
        if any(c.name.startswith("aten::") and c.name not in NOT_COMPUTE for c in e.cpu_children):
            continue  # a composite: its children are counted
        ops += 1
    out: dict[str, Any] = {"ops_per_step": ops, "kernels_per_step": None, "kernel_us_per_step": None}
    if cuda:
        # the GPU's own events: kernels, and the copies and fills it runs as well
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        out["kernels_per_step"] = len(kernels)
        out["kernel_us_per_step"] = float(sum(e.time_range.elapsed_us() for e in kernels))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", default=None, help="model name or path (default: the bundled MiniLM)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA (the paper profile)")
    p.add_argument("--methods", default="lora")
    p.add_argument("--variants", default="eager,compile")
    p.add_argument("--lengths", default="64", help="padded sequence lengths, comma-separated")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warm", type=int, default=3, help="steps before timing (compilation included)")
    p.add_argument("--count-ops", action="store_true", help="profile one more step: operators, kernels")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warm < 1:
        p.error("--steps and --warm must be >= 1")
    for method in args.methods.split(","):
        for length in (int(x) for x in args.lengths.split(",")):
            for variant in args.variants.split(","):
                print(json.dumps(run(method, variant, length, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
