"""Per-step time of an AdaLoRA or GeoLoRA training step against a LoRA step (same model, same batch).

Builds the model through :func:`validation.finetune.methods.prepare_lora` / ``prepare_adalora`` on every
linear of the encoder blocks (the paper profile's ``all-linear``) and runs a manual training loop
(forward, backward, ``optimizer.step()``, the AdaLoRA schedule callback, ``zero_grad``) like
``transformers.Trainer`` does, timing each part per step. The AdaLoRA schedule is placed so that the timed
steps fall in the phase asked for (``--phase warmup|budget|final``).

Usage (CPU; the figures of docs/performance.md "AdaLoRA step"):

    PYTHONPATH=. python scripts/adalora_step_bench.py --model mpnet-base --batch 1 --length 16 \
        --steps 20 --phase budget --count-ops --count-syncs

``--random-init`` builds the model from its config with random weights (GPU machines without the weights).
GeoLoRA (docs/performance.md "GeoLoRA integrator step"): ``--methods lora,geolora``; the callback's
integrator runs in ``on_pre_optimizer_step`` as in the Trainer.

``--count-ops`` / ``--count-syncs`` probe the last step: aten operators of the forward and backward, and
of the method's callbacks split by phase (GeoLoRA: ``augment``, ``finite_check``, ``truncate``,
``bookkeeping``) into device operators, host operators and host synchronisations (:class:`StepProbe`).

``geolora@batched_qr`` runs GeoLoRA with its ``batched_qr`` option (one batched QR per group of bases of
equal shape): compare its ``params_sha256`` with plain ``geolora``'s for bit-identity on the device.

``--phase-times`` (GeoLoRA) adds ``integrator_parts_ms_median``: the integrator's parts (``augment`` holding
the per-layer ``augment_bases`` QRs and the ``finite_check``; ``truncate`` holding the host ``svds``), each
call timed between two device synchronisations, which the plain step would overlap, so the parts are an
upper bound of what each costs inside the step (the same parameters result).

Each line also gives ``params_sha256``, a digest of the trainable
parameters after the steps: equal for ``adalora@peft`` and ``adalora@fast`` when the two allocation steps
agree bit for bit on the device used (compare runs made with the same flags).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any


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
        options={"adalora": {**schedule, **opts}} if method.startswith("adalora") else {method: opts},
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
                self.views = 0  # of which views (metadata only: no kernel on CUDA)

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                self.n += 1
                self.views += bool(getattr(func, "is_view", False))
                return func(*args, **(kwargs or {}))

        return Mode()


class StepProbe:
    """Operators and host synchronisations of a step, by phase, told apart into device and host work.

    On a CPU run every tensor lives on the CPU; the probe infers where each would live on a GPU run:
    a tensor copied to the CPU (``.to("cpu", ...)``, ``.cpu()``, ``.numpy()``) is *host*, so is every
    result of an operator with a host input (in-place operators excepted: they write their first
    argument); a ``.to(device, ...)`` of a host tensor is a host -> device copy and gives a device
    tensor. Counted per phase (:attr:`phase`, set by the caller):

    - ``ops``: aten operators on device tensors (on CUDA: one kernel launch or more each, except the
      ``view_ops`` among them, which only make a new view);
    - ``host_ops``: aten operators on host tensors (CPU work, no launch);
    - ``syncs``: ``item``/``float``/``int``/``bool`` of a device tensor (``_local_scalar_dense``),
      device -> host copies, ``.tolist()``/``.numpy()``, ``nonzero``; host -> device copies
      (``h2d``) apart.

    Use ``with probe:`` around the step; both a ``TorchFunctionMode`` and a ``TorchDispatchMode`` are
    entered.
    """

    def __init__(self) -> None:
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        self.phase = "other"
        self.ops: dict[str, int] = {}
        self.names: dict[str, dict[str, int]] = {}  # phase -> device operator name -> count
        self.views: dict[str, int] = {}  # device operators that are views (no kernel on CUDA)
        self.host_ops: dict[str, int] = {}
        self.syncs: dict[str, dict[str, int]] = {}
        self._host: dict[int, Any] = {}  # id -> weak reference (tensors compare elementwise)
        probe = self

        def tensors(obj: Any) -> list[Any]:
            import torch

            if isinstance(obj, torch.Tensor):
                return [obj]
            if isinstance(obj, (list, tuple)):
                return [t for o in obj for t in tensors(o)]
            if isinstance(obj, dict):
                return [t for o in obj.values() for t in tensors(o)]
            return []

        class Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                kwargs = kwargs or {}
                name = func.__name__
                ins = tensors(args) + tensors(kwargs)
                on_host = any(probe.is_host(t) for t in ins)
                out = func(*args, **kwargs)
                if name.startswith("_to_copy") and kwargs.get("device") is not None:
                    if on_host:  # host -> device copy: the result is a device tensor
                        probe._sync("h2d")
                        return out
                    if kwargs["device"].type == "cpu":
                        probe._sync("d2h")
                        for t in tensors(out):
                            probe.mark(t)
                        return out
                if on_host:
                    probe._count(probe.host_ops)
                    base = name.split(".")[0]
                    if not base.endswith("_") and "out" not in kwargs:
                        for t in tensors(out):
                            probe.mark(t)
                    return out
                probe._count(probe.ops)
                if getattr(func, "is_view", False):
                    probe._count(probe.views)
                per = probe.names.setdefault(probe.phase, {})
                per[name] = per.get(name, 0) + 1
                if name.startswith(("_local_scalar_dense", "nonzero")):
                    probe._sync(name.split(".")[0])
                return out

        class Function(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                name = getattr(func, "__name__", "")
                out = func(*args, **(kwargs or {}))
                if name in ("cpu", "numpy", "tolist") and args and not probe.is_host(args[0]):
                    probe._sync(name)  # no operator on a CPU run; a device -> host copy on a GPU run
                    if name == "cpu":
                        if out is args[0]:
                            out = out.view_as(out)
                        probe.mark(out)
                return out

        self._modes = (Function(), Dispatch())

    def is_host(self, t: Any) -> bool:
        """Whether ``t`` would live on the host on a GPU run."""
        ref = self._host.get(id(t))
        return ref is not None and ref() is t

    def mark(self, t: Any) -> None:
        """Mark ``t`` as a host tensor."""
        import weakref

        self._host[id(t)] = weakref.ref(t)

    def _count(self, table: dict[str, int]) -> None:
        table[self.phase] = table.get(self.phase, 0) + 1

    def _sync(self, kind: str) -> None:
        d = self.syncs.setdefault(self.phase, {})
        d[kind] = d.get(kind, 0) + 1

    def __enter__(self) -> StepProbe:
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)

    def wrap(self, obj: Any, attr: str, phase: str) -> None:
        """Make ``obj.attr`` (a method) count under ``phase`` (the enclosing phase is restored after)."""
        fn = getattr(obj, attr)

        def wrapped(*a: Any, **k: Any) -> Any:
            prev, self.phase = self.phase, phase
            try:
                return fn(*a, **k)
            finally:
                self.phase = prev

        setattr(obj, attr, wrapped)

    def summary(self) -> dict[str, Any]:
        """``{"ops": {phase: n}, "host_ops": {...}, "syncs": {phase: {kind: n}}}`` plus totals."""
        return {
            "ops": dict(self.ops),
            "view_ops": dict(self.views),
            "host_ops": dict(self.host_ops),
            "syncs": {k: dict(v) for k, v in self.syncs.items()},
            "ops_total": sum(self.ops.values()),
            "view_ops_total": sum(self.views.values()),
            "host_ops_total": sum(self.host_ops.values()),
            "syncs_total": sum(n for d in self.syncs.values() for k, n in d.items() if k != "h2d"),
            "h2d_total": sum(d.get("h2d", 0) for d in self.syncs.values()),
        }


def _integrators(prepared: Any) -> list[Any]:
    """The GeoLoRA integrators among the method's callbacks (an ``optimizer`` with ``truncate``)."""
    geos = (getattr(cb, "optimizer", None) for cb in prepared.callbacks)
    return [g for g in geos if g is not None and hasattr(g, "truncate")]


def _phases(prepared: Any, probe: StepProbe) -> None:
    """Label the integrator's parts for :class:`StepProbe` (GeoLoRA; other methods: one phase)."""
    for geo in _integrators(prepared):
        probe.wrap(geo, "augment", "augment")
        probe.wrap(geo, "_grads_finite", "finite_check")
        probe.wrap(geo, "truncate", "truncate")


def _phase_timers(prepared: Any, sync: Any) -> tuple[dict[str, list[float]], list[bool]]:
    """Time GeoLoRA's integrator parts (``augment`` with its ``augment_bases``: per layer the step-1 inputs,
    two QRs and their finish, or with ``batched_qr`` the grouped QRs alone; ``finite_check``; ``truncate``
    with its host ``svds``): each call is wrapped by ``sync()`` before and
    after, so the parts add device time that the unwrapped step would overlap. Returns ``{part: [seconds
    per recorded step]}`` (the caller appends a 0.0 slot per part for each step it records and sets the
    returned flag ``[True]`` while recording) and the flag. Other methods: nothing to wrap (``{}``)."""
    times: dict[str, list[float]] = {}
    recording = [False]
    for geo in _integrators(prepared):
        for attr, name in (
            ("augment", "augment"),
            ("_augment_bases", "augment_bases"),
            ("_factor_bases", "augment_bases"),  # batched_qr: the grouped QRs (one of the two runs)
            ("_grads_finite", "finite_check"),
            ("truncate", "truncate"),
            ("_svds", "svds"),
        ):
            fn = getattr(geo, attr, None)
            if fn is None:
                continue
            times.setdefault(name, [])

            def timed(*a: Any, _fn: Any = fn, _name: str = name, **k: Any) -> Any:
                if not recording[0]:
                    return _fn(*a, **k)
                sync()
                t = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    sync()
                    times[_name][-1] += time.perf_counter() - t

            setattr(geo, attr, timed)
    return times, recording


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
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and args.bf16) else None
    ops: dict[str, int] = {}
    probe_out: dict[str, Any] = {}

    def hooks(name: str) -> None:
        # the Trainer's order: on_pre_optimizer_step, optimizer.step(), on_optimizer_step, zero_grad,
        # global_step += 1, on_step_end; ``schedule`` times the three hooks
        for cb in prepared.callbacks:
            getattr(cb, name)(None, state, None, optimizer=opt, model=net)

    def forward() -> Any:
        if autocast is None:
            return net(**batch).loss
        with autocast:
            return net(**batch).loss

    losses: list[float] = []
    phase_times, recording = _phase_timers(prepared, sync) if args.phase_times else ({}, [False])
    for i in range(args.warm + args.steps):
        counted = (args.count_ops or args.count_syncs) and i == args.warm + args.steps - 1
        recording[0] = i >= args.warm and not counted
        if recording[0]:
            for v in phase_times.values():
                v.append(0.0)
        if counted:  # counted, not timed
            with _OpCounter() as m:
                loss = forward()
            ops["forward"], ops["forward_views"] = m.n, m.views
            with _OpCounter() as m:
                loss.backward()
            ops["backward"], ops["backward_views"] = m.n, m.views
            probe = StepProbe()
            _phases(prepared, probe)
            probe.phase = "bookkeeping"
            with probe:
                hooks("on_pre_optimizer_step")
            opt.step()
            with probe:
                hooks("on_optimizer_step")
            opt.zero_grad()
            state.global_step += 1
            with probe:
                hooks("on_step_end")
            probe_out = probe.summary()
            break
        sync()
        t0 = time.perf_counter()
        loss = forward()
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        hooks("on_pre_optimizer_step")
        sync()
        t3 = time.perf_counter()
        opt.step()
        sync()
        t4 = time.perf_counter()
        hooks("on_optimizer_step")
        opt.zero_grad()
        state.global_step += 1
        hooks("on_step_end")
        sync()
        t5 = time.perf_counter()
        if args.record_loss:
            losses.append(float(loss))
        if i >= args.warm:
            sched = (t3 - t2) + (t5 - t4)
            for k, v in zip(parts, (t1 - t0, t2 - t1, t4 - t3, sched, t5 - t0)):
                parts[k].append(v)
    out: dict[str, Any] = {"method": method, "phase": args.phase}
    out.update({f"{k}_ms_min": 1e3 * min(v) for k, v in parts.items()})
    if phase_times:
        out["integrator_parts_ms_median"] = {
            k: 1e3 * statistics.median(v) for k, v in sorted(phase_times.items())
        }
    out.update({f"{k}_ms_median": 1e3 * sorted(v)[len(v) // 2] for k, v in parts.items()})
    if probe_out:
        out["schedule_probe"] = probe_out
        out["host_sync_calls_per_step"] = probe_out["syncs_total"]
    if ops:
        ops["schedule"] = probe_out.get("ops_total", 0)
        ops["schedule_views"] = probe_out.get("view_ops_total", 0)
        out["aten_ops_per_step"] = ops
    if losses:
        out["losses"] = losses
    out["method_info_path"] = prepared.info.get("allocator")
    if prepared.info.get("allocator_fallback_reason"):
        out["allocator_fallback_reason"] = prepared.info["allocator_fallback_reason"]
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
    p.add_argument("--count-syncs", action="store_true", help="probe the last step (see StepProbe)")
    p.add_argument("--geolora-opts", default="{}", help='JSON options["geolora"], e.g. {"tau": 0.1}')
    p.add_argument("--record-loss", action="store_true", help="print every step's loss (a float() sync)")
    p.add_argument("--count-ops", action="store_true", help="count aten operators of the last step")
    p.add_argument(
        "--phase-times",
        action="store_true",
        help="GeoLoRA: time the integrator's parts, each call between two syncs (see _phase_timers)",
    )
    args = p.parse_args(argv)
    from validation.finetune.walltime import VARIANTS  # the same METHOD@VARIANT names as the C5 timing

    for spec in args.methods.split(","):
        # "adalora@peft": AdaLoRA with peft's allocation step; "geolora@batched_qr": GeoLoRA's option on
        if "@" in spec and spec not in VARIANTS:
            p.error(f"unknown variant {spec!r} (known: {', '.join(sorted(VARIANTS))})")
        method, variant_opts = VARIANTS.get(spec, (spec, {}))
        if method == "geolora":
            opts = {**json.loads(args.geolora_opts), **variant_opts}
        else:
            alloc = variant_opts.get("allocator") or args.allocator or ""
            opts = {"allocator": alloc} if alloc else {}
        out = run(method, args, opts)
        out["method"] = spec
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
