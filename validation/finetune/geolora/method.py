"""Runner integration of GeoLoRA: ``prepare`` (the common method signature) and a Trainer callback.

``prepare`` follows :mod:`validation.finetune.methods` exactly::

    prepare(model, *, budget_params, train_steps, seed, context) -> PreparedMethod

- Adapters: :class:`~validation.finetune.geolora.layer.GeoLoRALinear` on ``context.target_modules``; initial
  rank ``context.lora_r`` (the uniform-LoRA reference that defines the budget), maximal rank
  ``2 * lora_r`` (the authors' GLUE setting 8 -> 16), dropout ``context.lora_dropout``; the task head
  (``context.modules_to_save``; default as peft: ``classifier``/``score`` for ``SEQ_CLS``,
  ``qa_outputs`` for ``QUESTION_ANS``) stays
  trainable, everything else is frozen.
- Budget: a GeoLoRA adapter of rank r holds ``r (in + out) + r^2`` parameters (the core counts), so
  starting every module at ``lora_r`` would exceed the LoRA budget by the cores (about 1 % for hidden
  size 384, r = 8). :func:`match_initial_ranks` lowers single modules' initial ranks by one until the
  total is as close to ``budget_params`` as integer ranks allow. By default (``cap_params=True``)
  ``max(initial, budget_params)`` is also a hard cap of the global truncation, so GeoLoRA moves rank
  between layers but never exceeds the common budget; ``cap_params=False`` gives the paper's uncapped
  tau rule (the adapters may then grow up to ``max_rank``).
- Training: the Trainer's own optimizer (AdamW) keeps training the head. :class:`GeoLoRACallback`
  runs the integrator in ``on_pre_optimizer_step`` -- the last hook where the gradients of the step
  exist (``on_step_end`` comes after ``model.zero_grad()``) -- and clears the adapters' gradients, so
  AdamW skips them. ``on_step_end`` records the ranks and the parameter count of the step.
- Checkpoints: the Trainer's hold the adapters' factors and ranks and the head, not the frozen pretrained
  weights (:class:`~validation.finetune.trained_checkpoint.TrainedOnlyCheckpoints`), and beside them the
  integrator's state (:data:`STATE_FILE`); a cell resumes from them to the uninterrupted result.

Options (``context.options["geolora"]``, all recorded in ``info``): ``tau`` (0.15), ``mode``
(``"global"``), ``min_rank`` (2), ``max_rank`` (2 * lora_r), ``init_rank`` (lora_r), ``alpha`` (1.0),
``lr`` (a fixed coefficient learning rate; default: follow the Trainer's current learning rate),
``lr_scale`` (:data:`RUNNER_LR_SCALE` = 10, multiplies the Trainer's rate), ``coefficient_steps`` (0),
``cap_params`` (True), ``precondition`` (:data:`RUNNER_PRECONDITION` = ``"rms"``: per-layer
RMS-normalised step, see :class:`~validation.finetune.geolora.optim.GeoLoRAOptimizer`; ``"none"`` is the paper's
plain step). The two runner defaults deviate from the paper for a measured reason (docs/geolora.md).

``coefficient_steps = c > 0`` reproduces the practical schedule of the authors' public code: the
augmenting integrator step runs every ``c + 1`` optimizer steps, in between the Trainer's optimizer
updates the core ``S`` only (with its true gradient ``U^T G_W V``), and truncation happens after the
optimizer step with index ``floor(3c/4)`` of each cycle. Their GLUE scripts use c = 20-30; the
default 0 is the paper's Algorithm 1 (augment-update-truncate every step).
"""

from __future__ import annotations

import os
from typing import Any

from gelora.errors import ConfigError
from validation.finetune.trained_checkpoint import TrainedOnlyCheckpoints, trainer_callback_base

from .layer import (
    DEFAULT_ALPHA,
    GeoLoRALinear,
    adapter_param_count,
    inject_geolora,
)
from .optim import DEFAULT_MIN_RANK, DEFAULT_TAU, GeoLoRAOptimizer
from .plots import TRAJECTORY_FORM, compact_trajectories

__all__ = [
    "RUNNER_LR_SCALE",
    "RUNNER_PRECONDITION",
    "GeoLoRACallback",
    "geolora_layer_sizes",
    "match_initial_ranks",
    "prepare",
]

#: Runner defaults that deviate from the paper's plain step (chosen on the SST-2 CPU probe of
#: docs/geolora.md: with the paper's step at the Trainer's AdamW learning rate the adapters do not
#: train; the RMS-normalised step at 10x the rate matched LoRA's dev accuracy). Override per run with
#: ``options["geolora"] = {"precondition": "none", "lr_scale": 1.0}`` for the paper's setting.
RUNNER_PRECONDITION = "rms"
RUNNER_LR_SCALE = 10.0

#: the file of our own inside each Trainer checkpoint folder of a GeoLoRA cell: the integrator's state
STATE_FILE = "gelora_geolora_state.pt"
#: format tag of :data:`STATE_FILE`
STATE_FORMAT = "gelora.geolora_state/1"
#: the settings (``info`` keys) a resumed cell must share with the checkpoint it resumes
_RESUME_SETTINGS = (
    "init_rank",
    "max_rank",
    "tau",
    "mode",
    "min_rank",
    "alpha",
    "coefficient_steps",
    "cap_params",
    "lr",
    "lr_scale",
    "precondition",
    "batched_qr",
    "seed",
    "train_steps",
    "budget_params",
)

_KNOWN_OPTIONS = frozenset(
    {
        "tau",
        "mode",
        "min_rank",
        "max_rank",
        "init_rank",
        "alpha",
        "lr",
        "lr_scale",
        "coefficient_steps",
        "cap_params",
        "precondition",
        "batched_qr",
    }
)


class GeoLoRACallback(trainer_callback_base()):  # type: ignore[misc]
    """``transformers.TrainerCallback`` running GeoLoRA's integrator inside a Trainer.

    Parameters
    ----------
    optimizer : GeoLoRAOptimizer
        The integrator over the model's adapters.
    lr : float, optional
        Fixed coefficient learning rate; default: the Trainer's current rate (its warm-up / decay
        schedule applies) times ``lr_scale``.
    lr_scale : float
        Multiplier of the Trainer's rate when ``lr`` is None.
    coefficient_steps : int
        ``c`` of the practical schedule (module docstring); 0 = a full GeoLoRA step every step.

    Attributes
    ----------
    lrs : list of float
        Coefficient learning rate used at each integrator step.
    """

    def __init__(
        self,
        optimizer: GeoLoRAOptimizer,
        *,
        lr: float | None = None,
        lr_scale: float = 1.0,
        coefficient_steps: int = 0,
    ) -> None:
        super().__init__()
        if coefficient_steps < 0:
            raise ConfigError(f"coefficient_steps must be >= 0, got {coefficient_steps}")
        if lr is not None and not lr > 0:
            raise ConfigError(f"lr must be positive, got {lr}")
        if not lr_scale > 0:
            raise ConfigError(f"lr_scale must be positive, got {lr_scale}")
        self.optimizer = optimizer
        self.lr = lr
        self.lr_scale = float(lr_scale)
        self.coefficient_steps = int(coefficient_steps)
        self.lrs: list[float] = []
        self._pending: dict[str, Any] | None = None
        self._step = 0
        #: the settings a checkpoint's state must agree with (set by :func:`prepare`)
        self.settings: dict[str, Any] = {}

    # -- checkpoints: the integrator's state beside the Trainer's (resumable cells) -----------------------
    def state_dict(self) -> dict[str, Any]:
        """The integrator's and this callback's state (step count, RMS statistics, trajectories, ranks)."""
        import dataclasses

        opt = self.optimizer
        return {
            "format": STATE_FORMAT,
            "step_count": opt.step_count,
            "rms_state": {k: (v.detach().cpu().clone(), t) for k, (v, t) in opt._rms_state.items()},
            "pre_augment_ranks": dict(opt._pre_augment_ranks),
            "history": [dataclasses.asdict(h) for h in opt.history],
            "rank_trajectory": [(int(st), dict(r)) for st, r in opt.rank_trajectory],
            "param_trajectory": [(int(st), int(n)) for st, n in opt.param_trajectory],
            "ranks": opt.ranks(),
            "lrs": list(self.lrs),
        }

    def write_state(self, directory: str) -> None:
        """Write :data:`STATE_FILE` into ``directory`` atomically (temporary name, fsync, rename).

        Called from inside ``model.save_pretrained`` while training
        (:class:`~validation.finetune.trained_checkpoint.TrainedOnlyCheckpoints`): the Trainer saves the model,
        then deletes older checkpoints, then calls ``on_save``, so a state written in ``on_save`` would leave a
        moment with no resumable checkpoint at all.
        """
        import io

        import torch

        from gelora._io import atomic_write_bytes

        buf = io.BytesIO()
        torch.save({**self.state_dict(), "step": int(self._step), "settings": self.settings}, buf)
        atomic_write_bytes(os.path.join(directory, STATE_FILE), buf.getvalue())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Record ``(global_step, ranks)`` and the adapter parameter count of the finished step."""
        self._step = int(state.global_step)
        self.optimizer.record(int(state.global_step))
        return control

    def restore(self, checkpoint_dir: str) -> None:
        """Read :data:`STATE_FILE` of ``checkpoint_dir``; it is put back at ``on_train_begin``.

        Raises
        ------
        gelora.errors.IncompleteCheckpointError
            The checkpoint has no integrator state (written before GeoLoRA cells were resumable).
        gelora.errors.CheckpointMismatchError
            The state belongs to another step or to adapters of other names.
        """
        import torch

        from gelora.errors import CheckpointMismatchError, IncompleteCheckpointError

        path = os.path.join(checkpoint_dir, STATE_FILE)
        if not os.path.isfile(path):
            raise IncompleteCheckpointError(f"{path} not found: the GeoLoRA checkpoint cannot be resumed")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  # any unreadable file is an incomplete checkpoint
            raise IncompleteCheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from exc
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise IncompleteCheckpointError(f"{path} is not a GeoLoRA state ({STATE_FORMAT!r} expected)")
        if data.get("settings") != self.settings:
            raise CheckpointMismatchError(
                f"{path} was written by a GeoLoRA run of other settings ({data.get('settings')} against "
                f"{self.settings}): remove the cell's work folder to start it afresh"
            )
        step = os.path.basename(os.path.normpath(checkpoint_dir)).rpartition("-")[2]
        if str(data.get("step")) != step:
            raise CheckpointMismatchError(
                f"{path}: state of step {data.get('step')}, checkpoint of step {step}"
            )
        if set(data["ranks"]) != set(self.optimizer.layers):
            raise CheckpointMismatchError(f"{path}: the state's adapters differ from the model's")
        self._pending = data

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Put a restored state back, after the Trainer has loaded the checkpoint's weights."""
        from gelora.errors import CheckpointMismatchError

        from .optim import StepRecord

        self._step = int(state.global_step)
        data, self._pending = self._pending, None
        if data is None:
            return control
        if int(data["step"]) != int(state.global_step):
            raise CheckpointMismatchError(
                f"GeoLoRA state of step {data['step']}, but the Trainer resumes at step {state.global_step}"
            )
        opt = self.optimizer
        for name, r in data["ranks"].items():
            opt.layers[name].rank = int(r)
        device = next(iter(opt.layers.values())).lora_S.device
        opt.step_count = int(data["step_count"])
        opt._rms_state = {k: (v.to(device), int(t)) for k, (v, t) in data["rms_state"].items()}
        opt._pre_augment_ranks = dict(data["pre_augment_ranks"])
        # in place: ``info`` of the prepared method holds these very lists
        opt.history[:] = [StepRecord(**h) for h in data["history"]]
        opt.rank_trajectory[:] = [(int(st), dict(r)) for st, r in data["rank_trajectory"]]
        opt.param_trajectory[:] = [(int(st), int(n)) for st, n in data["param_trajectory"]]
        self.lrs[:] = list(data["lrs"])
        return control

    def _current_lr(self, kwargs: dict[str, Any]) -> float:
        if self.lr is not None:
            return float(self.lr)
        opt = kwargs.get("optimizer")
        groups = getattr(opt, "param_groups", None)
        if groups:
            return float(groups[0]["lr"]) * self.lr_scale
        return self.optimizer.lr * self.lr_scale

    def _phase(self, step: int) -> int:
        return step % (self.coefficient_steps + 1)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Run the integrator with the gradients of this step, then clear the adapters' grads."""
        opt = self.optimizer
        lr = self._current_lr(kwargs)
        if self.coefficient_steps == 0:
            opt.step(lr, record=False)
            self.lrs.append(lr)
        elif self._phase(int(state.global_step)) == 0:
            opt.step_count += 1
            opt.augment(lr)
            self.lrs.append(lr)
        else:  # the Trainer's optimizer updates S with its true gradient; U, V are not trained
            for m in opt.layers.values():
                m.lora_U.grad = None
                m.lora_V.grad = None
        return control

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """With ``coefficient_steps > 0``: truncate after the optimizer step of index floor(3c/4)."""
        c = self.coefficient_steps
        if c > 0 and self._phase(int(state.global_step)) == (3 * c) // 4:
            self.optimizer.truncate()
        return control

    def summary(self) -> dict[str, Any]:
        """:meth:`GeoLoRAOptimizer.summary` plus the coefficient learning rates used."""
        out = dict(self.optimizer.summary())
        out["coefficient_steps"] = self.coefficient_steps
        out["lr_first"] = self.lrs[0] if self.lrs else None
        out["lr_last"] = self.lrs[-1] if self.lrs else None
        return out


def prepare(model: Any, *, budget_params: int, train_steps: int, seed: int, context: Any) -> Any:
    """Inject GeoLoRA adapters and return a ``validation.finetune.methods.PreparedMethod``.

    Parameters
    ----------
    model : torch.nn.Module
        Freshly loaded ``transformers`` model (fp32, CPU or GPU); modified in place.
    budget_params : int
        Adapter budget of uniform LoRA of rank ``context.lora_r`` (``validation.finetune.methods.lora_budget``).
    train_steps : int
        Optimizer steps the Trainer will take (recorded; GeoLoRA needs no schedule).
    seed : int
        Seeds the random initial bases.
    context : validation.finetune.methods.MethodContext
        Target modules, ``lora_r``, ``lora_dropout``, ``modules_to_save``, ``options["geolora"]``.

    Returns
    -------
    PreparedMethod
        ``model`` (the same object, adapters injected), ``callbacks=[GeoLoRACallback]``,
        ``trainable_adapter_params`` = the initial adapter size, a JSON-serialisable ``info``
        (settings and the live ``rank_trajectory`` = ``[(step, {module: rank})]`` and
        ``param_trajectory`` = ``[(step, n_params)]`` lists, filled during training) and
        ``finalise(model) -> dict`` returning ``{"summary": callback.summary(), ...}`` (final and
        time-averaged adapter size) with the trajectories after training.
    """
    import torch

    from validation.finetune.methods import PreparedMethod

    opts = dict(context.options.get("geolora", {}))
    unknown = set(opts) - _KNOWN_OPTIONS
    if unknown:
        raise ConfigError(f"unknown geolora options {sorted(unknown)}; known: {sorted(_KNOWN_OPTIONS)}")
    r0 = int(opts.get("init_rank", context.lora_r))
    r_max = int(opts.get("max_rank", 2 * r0))
    tau = float(opts.get("tau", DEFAULT_TAU))
    mode = str(opts.get("mode", "global"))
    min_rank = int(opts.get("min_rank", min(DEFAULT_MIN_RANK, r0)))
    alpha = float(opts.get("alpha", DEFAULT_ALPHA))
    coefficient_steps = int(opts.get("coefficient_steps", 0))
    cap = bool(opts.get("cap_params", True))
    lr_fixed = opts.get("lr")
    lr_scale = float(opts.get("lr_scale", RUNNER_LR_SCALE))
    precondition = str(opts.get("precondition", RUNNER_PRECONDITION))
    # an implementation choice, not a setting: the same bits on the CPU (GELORA_GEOLORA_BATCHED_QR=1 picks it
    # without changing a run's profile, as GELORA_ADALORA_ALLOCATOR does for AdaLoRA)
    batched_qr = bool(opts.get("batched_qr", os.environ.get("GELORA_GEOLORA_BATCHED_QR") == "1"))

    torch.manual_seed(int(seed))
    if context.modules_to_save:
        heads: tuple[str, ...] = tuple(context.modules_to_save)
    else:  # peft's defaults per task type
        heads = ("qa_outputs",) if context.task_type == "QUESTION_ANS" else ("classifier", "score")
    layers = inject_geolora(
        model,
        context.target_modules,
        init_rank=r0,
        max_rank=r_max,
        alpha=alpha,
        dropout=float(context.lora_dropout),
        seed=int(seed),
        trainable_modules=heads,
    )
    matched = match_initial_ranks(
        {n: (m.in_features, m.out_features) for n, m in layers.items()}, r0, int(budget_params)
    )
    for n, m in layers.items():
        m.rank = min(matched[n], m.max_rank)
    initial = sum(m.n_trainable() for m in layers.values())
    cap_value = max(initial, int(budget_params)) if cap else None
    opt = GeoLoRAOptimizer(
        layers,
        lr=float(lr_fixed) if lr_fixed is not None else 1e-3,
        tau=tau,
        mode=mode,  # type: ignore[arg-type]
        min_rank=min_rank,
        budget_params=cap_value,
        precondition=precondition,  # type: ignore[arg-type]
        batched_qr=batched_qr,
    )
    callback = GeoLoRACallback(
        opt,
        lr=float(lr_fixed) if lr_fixed is not None else None,
        lr_scale=lr_scale,
        coefficient_steps=coefficient_steps,
    )
    info: dict[str, Any] = {
        "init_rank": r0,
        "max_rank": r_max,
        "tau": tau,
        "mode": mode,
        "min_rank": min_rank,
        "alpha": alpha,
        "coefficient_steps": coefficient_steps,
        "cap_params": cap_value,
        "lr": lr_fixed,
        "lr_scale": lr_scale,
        "precondition": precondition,
        **({"batched_qr": True} if batched_qr else {}),
        "seed": int(seed),
        "train_steps": int(train_steps),
        "budget_params": int(budget_params),
        "initial_adapter_params": initial,
        "lora_equivalent_params": sum(r0 * (m.in_features + m.out_features) for m in layers.values()),
        "modules": {n: [m.in_features, m.out_features] for n, m in layers.items()},
        "rank_trajectory": opt.rank_trajectory,
        "param_trajectory": opt.param_trajectory,
    }

    def finalise(_model: Any) -> dict[str, Any]:
        # the cell keeps the change points only: every step of a 4,500-step run made a 9.6 MB cell file
        ranks, params = compact_trajectories(opt.rank_trajectory, opt.param_trajectory)
        return {
            "summary": callback.summary(),
            "rank_trajectory": ranks,
            "param_trajectory": params,
            "trajectory_recorded_steps": len(opt.rank_trajectory),
            "trajectory_form": TRAJECTORY_FORM,
        }

    # resumable through ``restore``: the Trainer's checkpoint holds the factors, each adapter's rank
    # (``lora_rank``) and the head, not the frozen weights (TrainedOnlyCheckpoints), STATE_FILE the integrator's
    # state (step count, RMS statistics, trajectories); without it a resumed cell ended with other ranks,
    # parameters and losses than an uninterrupted one (tests/unit/validation/finetune/test_geolora_resume.py)
    callback.settings = {k: info.get(k) for k in _RESUME_SETTINGS}
    checkpoints = TrainedOnlyCheckpoints(model, after_save=callback.write_state)

    def restore(checkpoint_dir: str) -> None:
        # the state first: a state of other adapters is a mismatch (the cell fails), not an incomplete file
        callback.restore(checkpoint_dir)
        try:
            checkpoints.restore(checkpoint_dir)
        except Exception:
            callback._pending = None  # not resumed (the cell restarts or fails): no state to put back
            raise

    return PreparedMethod(model, [callback, checkpoints], initial, info, finalise, restore=restore)


def match_initial_ranks(shapes: dict[str, tuple[int, int]], rank: int, budget_params: int) -> dict[str, int]:
    """Initial ranks near ``rank`` whose GeoLoRA size is closest to ``budget_params``.

    Starting from ``rank`` everywhere (``sum r (in + out) + r^2``, i.e. the LoRA budget plus the cores),
    ranks are lowered by one, one module at a time (the module whose decrement brings the total closest
    to the budget), while that reduces ``|total - budget|``; ranks stay >= 1.

    Parameters
    ----------
    shapes : dict of str to (in_features, out_features)
    rank : int
        Starting rank (``context.lora_r``).
    budget_params : int

    Returns
    -------
    dict of str to int
    """
    ranks = {n: int(rank) for n in shapes}

    def total() -> int:
        return sum(adapter_param_count(i, o, ranks[n]) for n, (i, o) in shapes.items())

    cur = total()
    while True:
        best: tuple[int, str] | None = None
        for n, (i, o) in shapes.items():
            if ranks[n] <= 1:
                continue
            new = cur - adapter_param_count(i, o, ranks[n]) + adapter_param_count(i, o, ranks[n] - 1)
            if best is None or abs(new - budget_params) < abs(best[0] - budget_params):
                best = (new, n)
        if best is None or abs(best[0] - budget_params) >= abs(cur - budget_params):
            return ranks
        ranks[best[1]] -= 1
        cur = best[0]


def geolora_layer_sizes(layers: dict[str, GeoLoRALinear]) -> dict[str, int]:
    """``{module: adapter parameters at its current rank}`` (for reports)."""
    return {n: adapter_param_count(m.in_features, m.out_features, m.rank) for n, m in layers.items()}
