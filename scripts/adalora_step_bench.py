"""Per-step time of an AdaLoRA training step against a LoRA step (same model, same batch).

Builds the model through :func:`validation.finetune.methods.prepare_lora` / ``prepare_adalora`` on every
linear of the encoder blocks (the paper profile's ``all-linear``) and runs a manual training loop
(forward, backward, ``optimizer.step()``, the AdaLoRA schedule callback, ``zero_grad``) like
``transformers.Trainer`` does, timing each part per step. The AdaLoRA schedule is placed so that the timed
steps fall in the phase asked for (``--phase warmup|budget|final``).

Usage (CPU; the figures of docs/performance.md "AdaLoRA step"):

    PYTHONPATH=. python scripts/adalora_step_bench.py --model mpnet-base --batch 1 --length 16 \
        --steps 20 --phase budget --count-ops --count-syncs

``--random-init`` builds the model from its config with random weights (GPU machines without the weights).
``--count-syncs`` counts host-synchronising tensor calls (``.item()``, ``.tolist()``, ``.cpu()``, ...) per
step of the schedule callback. Each line also gives ``params_sha256``, a digest of the trainable
parameters after the steps: equal for ``adalora@peft`` and ``adalora@fast`` when the two allocation steps
agree bit for bit on the device used (run without ``--count-ops``, which ends the last step early).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

#: tensor methods and functions whose result is used on the host (a device -> host sync on CUDA)
SYNC_CALLS = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__int__", "__float__")


def _build(model_name: str | None, random_init: bool, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from gelora.models import resolve_model_name

    path = resolve_model_name(model_name)
    tok = AutoTokenizer.from_pretrained(path)
    if random_init:
        cfg = AutoConfig.from_pretrained(path, num_labels=2)
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, dtype=torch.float32)
    return model.to(device), tok


def _prepare(method: str, model: Any, tok: Any, phase: str, steps: int, opts: dict[str, Any]) -> Any:
    from gelora.architecture import target_module_names
    from validation.finetune.methods import MethodContext, get_method, lora_budget

    targets = tuple(target_module_names(model, ("all-linear",)))
    total = 1000
    # place the timed steps (global steps 0..steps+warm-1) in the phase asked for
    schedule = {
        "warmup": {"tinit": 900, "tfinal": 50},
        "budget": {"tinit": 0, "tfinal": 50},
        "final": {"tinit": 0, "tfinal": total - 1},
    }[phase]
    ctx = MethodContext(
        task="mrpc",
        tokenizer=tok,
        target_modules=targets,
        lora_r=8,
        lora_alpha=16.0,
        lora_dropout=0.1,
        task_type="SEQ_CLS",
        options={"adalora": {**schedule, **opts}},
    )
    budget = lora_budget(model, targets, 8)
    return get_method(method)(model, budget_params=budget, train_steps=total, seed=1, context=ctx)


class _OpCounter:
    """A ``TorchDispatchMode`` counting aten operators (on CUDA each is one or more kernel launches)."""

    def __new__(cls) -> Any:
        from torch.utils._python_dispatch import TorchDispatchMode

        class Mode(TorchDispatchMode):
            def __init__(self) -> None:
                super().__init__()
                self.n = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                self.n += 1
                return func(*args, **(kwargs or {}))

        return Mode()


class _SyncCounter:
    """A ``TorchFunctionMode`` counting calls of :data:`SYNC_CALLS` (and ``torch.kthvalue``)."""

    def __new__(cls) -> Any:
        from torch.overrides import TorchFunctionMode

        class Mode(TorchFunctionMode):
            def __init__(self) -> None:
                super().__init__()
                self.counts: dict[str, int] = {}

            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                name = getattr(func, "__name__", str(func))
                if name in SYNC_CALLS or name == "kthvalue":
                    self.counts[name] = self.counts.get(name, 0) + 1
                if name == "to" and args and getattr(args[0], "device", None) is not None:
                    if args[0].device.type == "cpu":  # host -> device copy of a host-built tensor
                        self.counts["to(from cpu)"] = self.counts.get("to(from cpu)", 0) + 1
                return func(*args, **(kwargs or {}))

        return Mode()


def run(method: str, args: argparse.Namespace, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    model, tok = _build(args.model, args.random_init, args.device)
    prepared = _prepare(method, model, tok, args.phase, args.steps, opts)
    net = prepared.model
    net.train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(5, tok.vocab_size, (args.batch, args.length), generator=g).to(args.device),
        "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long).to(args.device),
        "labels": torch.randint(0, 2, (args.batch,), generator=g).to(args.device),
    }
    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class _State:
        global_step = 0

    state = _State()
    parts: dict[str, list[float]] = {
        "forward": [],
        "backward": [],
        "optimizer": [],
        "schedule": [],
        "step": [],
    }
    counts: list[dict[str, int]] = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and args.bf16) else None
    ops: dict[str, int] = {}
    for i in range(args.warm + args.steps):
        if args.count_ops and i == args.warm + args.steps - 1:  # the last step: counted, not timed
            with _OpCounter() as m:
                loss = net(**batch).loss
            ops["forward"] = m.n
            with _OpCounter() as m:
                loss.backward()
            ops["backward"] = m.n
            opt.step()
            with _OpCounter() as m:
                for cb in prepared.callbacks:
                    cb.on_optimizer_step(None, state, None)
            ops["schedule"] = m.n
            break
        sync()
        t0 = time.perf_counter()
        if autocast is not None:
            with autocast:
                loss = net(**batch).loss
        else:
            loss = net(**batch).loss
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        sync()
        t3 = time.perf_counter()
        for cb in prepared.callbacks:
            if args.count_syncs and i >= args.warm:
                mode = _SyncCounter()
                with mode:
                    cb.on_optimizer_step(None, state, None)
                counts.append(mode.counts)
            else:
                cb.on_optimizer_step(None, state, None)
        sync()
        t4 = time.perf_counter()
        opt.zero_grad()
        state.global_step += 1
        if i >= args.warm:
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                parts[k].append(v)
    out: dict[str, Any] = {"method": method, "phase": args.phase}
    out.update({f"{k}_ms_min": 1e3 * min(v) for k, v in parts.items()})
    out.update({f"{k}_ms_median": 1e3 * sorted(v)[len(v) // 2] for k, v in parts.items()})
    if counts:
        out["host_sync_calls_per_step"] = counts[-1]
    if ops:
        out["aten_ops_per_step"] = ops
    out["method_info_path"] = prepared.info.get("allocator")
    out["params_sha256"] = _params_digest(net)
    return out


def _params_digest(net: Any) -> str:
    """SHA-256 of every trainable parameter's bytes, in name order, after the steps.

    Runs of ``adalora@peft`` and ``adalora@fast`` start from the same seed and batch, so equal digests
    mean the two allocation steps left bit-identical adapters on this device (on CUDA too, which the
    CPU unit tests cannot show).
    """
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(net.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model name or path (default: the bundled MiniLM)")
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA (the paper profile)")
    p.add_argument("--methods", default="lora,adalora@peft,adalora@fast", help="METHOD[@peft|@fast],...")
    p.add_argument("--phase", default="budget", choices=("warmup", "budget", "final"))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warm", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--allocator", default=None, help="AdaLoRA option 'allocator' (fast | peft)")
    p.add_argument("--count-syncs", action="store_true")
    p.add_argument("--count-ops", action="store_true", help="count aten operators of the last step")
    args = p.parse_args(argv)
    for spec in args.methods.split(","):
        method, _, alloc = spec.partition("@")  # "adalora@peft": AdaLoRA with peft's allocation step
        alloc = alloc or args.allocator or ""
        opts = {"allocator": alloc} if alloc else {}
        out = run(method, args, opts)
        out["method"] = spec
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
