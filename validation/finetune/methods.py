"""Fine-tuning methods behind one entry point, all at the same adapter-parameter budget.

Common signature (every entry of :data:`METHODS` resolves to a callable of this form)::

    prepare(model, *, budget_params: int, train_steps: int, seed: int, context: MethodContext) -> PreparedMethod

- ``model``: a ``transformers`` sequence-classification (or QA) model, freshly loaded, fp32, on CPU or GPU.
- ``budget_params``: the adapter-parameter budget, i.e. the number of trainable adapter parameters of
  uniform LoRA of rank ``context.lora_r`` on ``context.target_modules`` (see :func:`lora_budget`). The
  classification head (``modules_to_save``) is trained identically by every method and is *not* counted.
- ``train_steps``: total optimizer steps the Trainer will take (AdaLoRA's schedule needs it).
- ``seed``: the cell's seed (adapter initialisation happens inside ``prepare``, after seeding).
- ``context``: :class:`MethodContext` (task, tokenizer, texts for GeLoRA's intrinsic-dimension estimate,
  target modules, LoRA rank/alpha/dropout, method options).

The result is a :class:`PreparedMethod`: the model to train (usually a ``peft.PeftModel``), Trainer callbacks
(AdaLoRA's ``update_and_allocate`` schedule), the number of trainable adapter parameters (compared with the
budget by :func:`check_budget`), and a JSON-serialisable ``info`` dict recorded in the cell's result (ranks
used, schedule, ...).

Entries are imported lazily (``"module:function"`` strings), so importing this module does not import
``peft`` or the GeLoRA core.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gelora.errors import ConfigError

#: default LoRA target modules for BERT-style encoders (the attention query and value projections)
DEFAULT_TARGET_MODULES: tuple[str, ...] = ("query", "value")

#: relative tolerance of the adapter-parameter budget check; integer ranks cannot hit a budget exactly
#: (GeLoRA rounds per-layer ranks, AdaLoRA adds one singular value per rank), 2 % covers both.
BUDGET_RTOL = 0.02


@dataclass(frozen=True)
class MethodContext:
    """Everything a method may need besides the model.

    Attributes
    ----------
    task : str
        GLUE/SQuAD task name (``"rte"``, ``"stsb"``, ``"squad_v2"``, ...).
    tokenizer : transformers.PreTrainedTokenizerBase
        The model's tokenizer.
    train_texts : sequence of str
        Training inputs (pairs joined by the tokenizer's separator) for GeLoRA's intrinsic-dimension
        estimate; methods that do not need them ignore them.
    target_modules : tuple of str
        Module-name suffixes that receive adapters (default ``("query", "value")``).
    lora_r : int
        Rank of the uniform-LoRA reference that defines the parameter budget.
    lora_alpha : float
        LoRA scaling numerator (``alpha / r``); GeLoRA keeps ``alpha / r`` constant per layer.
    lora_dropout : float
        Dropout on the adapter input, in [0, 1).
    modules_to_save : tuple of str or None
        Fully trained modules (the task head); ``None`` lets peft pick from the task type.
    task_type : str
        peft task type, ``"SEQ_CLS"`` or ``"QUESTION_ANS"``.
    max_length : int
        Token length used for tokenisation (GeLoRA's hidden-state pass uses the same).
    options : dict
        Method-specific options (for example ``{"gelora": {"n_texts": 256, "method": "twonn"}}``,
        ``{"adalora": {"tinit_fraction": 0.1}}``); recorded in results.
    """

    task: str
    tokenizer: Any
    train_texts: Sequence[str] = ()
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    modules_to_save: tuple[str, ...] | None = None
    task_type: str = "SEQ_CLS"
    max_length: int = 128
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedMethod:
    """A model ready for ``transformers.Trainer`` plus what the cell records about it.

    Attributes
    ----------
    model : torch.nn.Module
        The model to train (a ``peft.PeftModel`` for adapter methods).
    callbacks : list of transformers.TrainerCallback
        Extra Trainer callbacks (AdaLoRA's rank-allocation schedule); may be empty.
    trainable_adapter_params : int
        Trainable adapter parameters, head excluded; for AdaLoRA the parameters at the *final* rank
        budget (the initial over-allocation is reported in ``info``).
    info : dict
        JSON-serialisable details (ranks per module, schedule, estimator output, ...).
    finalise : callable or None
        Optional ``finalise(model) -> dict`` called after training; its result is merged into the cell's
        ``method_info`` (AdaLoRA reports the ranks it actually allocated).
    resumable : bool
        Whether a Trainer checkpoint of this method can be loaded back into a freshly prepared model and
        continue as if uninterrupted (every method of :data:`METHODS` can, AdaLoRA, GeoLoRA and head-only
        through ``restore``: tests/unit/validation/finetune/test_adalora_resume.py, test_geolora_resume.py);
        a method that sets it to ``False`` trains without checkpoints and an interrupted cell of it restarts
        from step 0 (``train.restarted_discarding`` names a checkpoint found and not used; with no checkpoint,
        nothing records the restart).
    restore : callable or None
        Optional ``restore(checkpoint_dir) -> None``, called by the runner before
        ``trainer.train(resume_from_checkpoint=checkpoint_dir)`` for state the Trainer does not keep
        (AdaLoRA's allocation state, :mod:`validation.finetune.adalora_resume`), or to check a checkpoint that
        holds the trained tensors only (:mod:`validation.finetune.trained_checkpoint`). It raises
        :class:`gelora.errors.IncompleteCheckpointError` when the checkpoint lacks that state (the runner then
        restarts the cell from step 0 and records why) and :class:`gelora.errors.CheckpointMismatchError`
        when the checkpoint belongs to another configuration (the cell fails).
    """

    model: Any
    callbacks: list[Any]
    trainable_adapter_params: int
    info: dict[str, Any]
    finalise: Callable[[Any], dict[str, Any]] | None = None
    resumable: bool = True
    restore: Callable[[str], None] | None = None


PrepareFn = Callable[..., PreparedMethod]

#: method name -> "module:function" implementing the common ``prepare`` signature
METHODS: dict[str, str] = {
    "lora": "validation.finetune.methods:prepare_lora",
    "adalora": "validation.finetune.methods:prepare_adalora",
    "gelora": "validation.finetune.methods:prepare_gelora",
    "full": "validation.finetune.methods:prepare_full",
    "head_only": "validation.finetune.methods:prepare_head_only",
    "geolora": "validation.finetune.geolora.method:prepare",
}

#: GeLoRA's ablations (validation/finetune/ablations.py, docs/validation.md "Ablations"); all but the
#: literal pair (the rule's unscaled ranks and uniform LoRA at that smaller budget) are at the budget
ABLATION_METHODS: tuple[str, ...] = (
    "gelora_permuted", "gelora_reversed", "gelora_literal", "lora_literal",
    "gelora_offset0", "gelora_offset1", "gelora_offset2", "gelora_offset4",
    "gelora_twonn", "gelora_mle", "gelora_danco",
    "gelora_alpha_const", "gelora_alpha32", "gelora_rslora", "gelora_generic",
)  # fmt: skip
METHODS.update({m: f"validation.finetune.ablations:prepare_{m}" for m in ABLATION_METHODS})

#: methods trained at the common adapter budget (``full`` is a reference without a budget)
BUDGETED_METHODS = frozenset({"lora", "adalora", "gelora", "geolora"}) | (
    frozenset(ABLATION_METHODS) - {"gelora_literal", "lora_literal"}
)


# --------------------------------------------------------------------------------------------- helpers
def _matches(name: str, target_modules: Sequence[str]) -> bool:
    last = name.rsplit(".", 1)[-1]
    return any(last == t or name.endswith("." + t) or name == t for t in target_modules)


def target_linear_shapes(model: Any, target_modules: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{module name: (in_features, out_features)}`` of the linear modules LoRA targets (``Conv1D`` too).

    Raises
    ------
    ConfigError
        If no linear module matches ``target_modules``.
    """
    from gelora.architecture import is_linear, linear_in_out

    shapes = {
        name: linear_in_out(mod)
        for name, mod in model.named_modules()
        if is_linear(mod) and _matches(name, target_modules)
    }
    if not shapes:
        raise ConfigError(
            f"no linear module of {type(model).__name__} matches target_modules={list(target_modules)}"
        )
    return shapes


def lora_budget(model: Any, target_modules: Sequence[str], r: int) -> int:
    """Adapter parameters of uniform LoRA with rank ``r``: ``sum_m r * (in_m + out_m)``.

    Parameters
    ----------
    model : torch.nn.Module
        The base model (before any adapter is added).
    target_modules : sequence of str
        Module-name suffixes that receive adapters.
    r : int
        LoRA rank, >= 1.

    Returns
    -------
    int
        Number of parameters in all ``lora_A`` (r x in) and ``lora_B`` (out x r) matrices.
    """
    if int(r) < 1:
        raise ConfigError(f"LoRA rank must be >= 1, got {r}")
    return sum(int(r) * (i + o) for i, o in target_linear_shapes(model, target_modules).values())


def count_adapter_params(model: Any) -> int:
    """Trainable parameters that belong to adapters (names containing ``lora_``), head excluded."""
    return sum(
        int(p.numel())
        for n, p in model.named_parameters()
        if p.requires_grad and any(part.startswith("lora_") for part in n.split("."))
    )


def count_trainable_params(model: Any) -> int:
    """All trainable parameters (adapters + head, or the whole model for full fine-tuning)."""
    return sum(int(p.numel()) for p in model.parameters() if p.requires_grad)


def check_budget(name: str, prepared: PreparedMethod, budget_params: int, rtol: float = BUDGET_RTOL) -> dict:
    """Compare a method's adapter parameters with the common budget.

    Returns
    -------
    dict
        ``{"budget_params", "trainable_adapter_params", "relative_gap", "rtol", "within_budget"}``;
        ``within_budget`` is ``None`` for methods without a budget (``full``).

    Raises
    ------
    ConfigError
        If a budgeted method deviates from the budget by more than ``rtol`` (relative).
    """
    got = int(prepared.trainable_adapter_params)
    gap = (got - budget_params) / budget_params if budget_params > 0 else math.inf
    record = {
        "budget_params": int(budget_params),
        "trainable_adapter_params": got,
        "relative_gap": gap,
        "rtol": rtol,
        "within_budget": None,
    }
    if name in BUDGETED_METHODS:
        record["within_budget"] = abs(gap) <= rtol
        if not record["within_budget"]:
            raise ConfigError(
                f"method {name!r} has {got} trainable adapter parameters, {gap:+.1%} from the budget "
                f"{budget_params} (tolerance {rtol:.0%})"
            )
    return record


def get_method(name: str) -> PrepareFn:
    """Resolve a method name of :data:`METHODS` to its ``prepare`` callable (imported lazily).

    Raises
    ------
    ConfigError
        Unknown method, or its module cannot be imported (the message names the module and why).
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    module_name, _, func_name = METHODS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"method {name!r} is not available: cannot import {module_name} ({exc})") from exc
    fn = getattr(module, func_name, None)
    if fn is None:
        raise ConfigError(f"method {name!r}: module {module_name} has no function {func_name!r}")
    return _adapt_signature(fn)


def _adapt_signature(fn: Callable[..., PreparedMethod]) -> PrepareFn:
    """Accept ``prepare(model, spec, budget, train_steps, seed)`` as well as the common signature."""
    params = inspect.signature(fn).parameters
    if "context" in params:
        return fn

    def adapted(model: Any, *, budget_params: int, train_steps: int, seed: int, context: MethodContext):
        spec = {
            "task": context.task,
            "target_modules": list(context.target_modules),
            "lora_r": context.lora_r,
            "lora_alpha": context.lora_alpha,
            "lora_dropout": context.lora_dropout,
            "task_type": context.task_type,
            "modules_to_save": list(context.modules_to_save) if context.modules_to_save else None,
            "options": dict(context.options),
        }
        return fn(model, spec, budget_params, train_steps, seed)

    return adapted


def _peft_common(context: MethodContext) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "target_modules": list(context.target_modules),
        "lora_dropout": float(context.lora_dropout),
        "task_type": context.task_type,
    }
    if context.modules_to_save is not None:
        kw["modules_to_save"] = list(context.modules_to_save)
    return kw


def _seed_all(seed: int) -> None:
    from transformers import set_seed

    set_seed(int(seed))


# --------------------------------------------------------------------------------------------- methods
def prepare_lora(
    model: Any, *, budget_params: int, train_steps: int, seed: int, context: MethodContext
) -> PreparedMethod:
    """Uniform LoRA: rank ``context.lora_r`` on every target module (defines the budget)."""
    from peft import LoraConfig, get_peft_model

    _seed_all(seed)
    config = LoraConfig(
        r=int(context.lora_r),
        lora_alpha=float(context.lora_alpha),  # type: ignore[arg-type]  # peft annotates int, accepts float
        **_peft_common(context),
    )
    peft_model = get_peft_model(model, config)
    n = count_adapter_params(peft_model)
    info = {"r": int(context.lora_r), "lora_alpha": float(context.lora_alpha), "ranks": _ranks_of(peft_model)}
    return PreparedMethod(peft_model, [], n, info)


def _ranks_of(peft_model: Any) -> dict[str, int]:
    """``{module name: rank}`` of the LoRA layers of a peft model (from the lora_A weight shapes)."""
    ranks: dict[str, int] = {}
    for name, p in peft_model.named_parameters():
        if name.endswith("lora_A.default.weight"):
            mod = name[: -len(".lora_A.default.weight")]
            ranks[_short_name(mod)] = int(p.shape[0])
    return ranks


def _short_name(name: str) -> str:
    for prefix in ("base_model.model.", "base_model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def make_adalora_callback(peft_model: Any, *, allocator: str = "fast") -> Any:
    """A ``TrainerCallback`` that runs AdaLoRA's budget schedule.

    peft's ``update_and_allocate(global_step)`` is run in ``on_optimizer_step``, which
    ``transformers.Trainer`` fires after ``optimizer.step()`` and before ``model.zero_grad()``, as peft
    requires (the importance scores need the gradients of the step just taken). ``state.global_step`` is
    the 0-based index of the step being taken at that point (it is incremented after ``zero_grad``).

    Parameters
    ----------
    peft_model : peft.PeftModel
        The AdaLoRA model (anything with ``base_model.update_and_allocate(step)`` for the ``"peft"`` path).
    allocator : {"fast", "peft"}, default "fast"
        ``"fast"``: :class:`validation.finetune.adalora_fast.FastAdaLoraAllocator`, peft's arithmetic with
        few host synchronisations, which falls back to peft's own method where the installed peft is not a
        verified version (the callback's ``allocator.info()`` says which path ran and why); ``"peft"``:
        peft's ``update_and_allocate`` for every step.

    The callback also makes the Trainer's checkpoints resumable (:mod:`validation.finetune.adalora_resume`):
    from ``on_train_begin`` to ``on_train_end`` a checkpoint holds the ``init_r``-shaped adapters and the
    allocation state, and ``on_train_begin`` puts back the state that ``callback.resume.restore(checkpoint)``
    read before ``trainer.train(resume_from_checkpoint=checkpoint)``.

    Returns
    -------
    transformers.TrainerCallback
        With attributes ``calls`` (the steps scheduled), ``allocator`` and ``resume``
        (:class:`validation.finetune.adalora_resume.AdaLoraResume`).

    Raises
    ------
    ConfigError
        Unknown ``allocator``.
    """
    from transformers import TrainerCallback

    from validation.finetune.adalora_fast import FastAdaLoraAllocator
    from validation.finetune.adalora_resume import AdaLoraResume

    if allocator not in ("fast", "peft"):
        raise ConfigError(f"AdaLoRA option 'allocator' must be 'fast' or 'peft', got {allocator!r}")
    alloc = FastAdaLoraAllocator(peft_model, force_peft=allocator == "peft")
    calls: list[int] = []
    resume = AdaLoraResume(peft_model, alloc, calls)

    class AdaLoraScheduleCallback(TrainerCallback):
        def __init__(self) -> None:
            self.calls = calls
            self.allocator = alloc
            self.resume = resume

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            # after the Trainer loaded a checkpoint's weights (a rank pattern set earlier would resize them)
            resume.apply(int(state.global_step))
            resume.active = True
            return control

        def on_optimizer_step(self, args, state, control, **kwargs):  # noqa: ANN001
            alloc(state.global_step)
            self.calls.append(int(state.global_step))
            return control

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            resume.step = int(state.global_step)  # the step of a checkpoint saved after this call
            # the Trainer saves after on_step_end; a checkpoint holds the rank pattern of this step
            if getattr(control, "should_save", False):
                alloc.materialise()
            return control

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            alloc.materialise()
            resume.active = False
            return control

    return AdaLoraScheduleCallback()


def prepare_adalora(
    model: Any, *, budget_params: int, train_steps: int, seed: int, context: MethodContext
) -> PreparedMethod:
    """AdaLoRA (Zhang et al., 2023) through peft, ending at the uniform-LoRA rank budget.

    ``target_r = context.lora_r`` so the final total rank equals uniform LoRA's; ``init_r`` defaults to
    ``ceil(1.5 * target_r)`` (AdaLoRA's paper setting). The schedule: ``tinit`` = 10 % and ``tfinal`` = 20 %
    of ``train_steps`` (options ``tinit_fraction``/``tfinal_fraction``), ``deltaT`` = 1 unless given;
    ``total_step = train_steps``. The reported ``trainable_adapter_params`` are those of the final budget,
    ``sum_m target_r * (in_m + out_m + 1)`` (A rows, B columns and one singular value per rank).

    Option ``allocator`` (``"fast"``, the default, or ``"peft"``; without the option the environment
    variable ``GELORA_ADALORA_ALLOCATOR``) picks the implementation of the allocation step (see
    :func:`make_adalora_callback`); both compute peft's allocation, bit for bit on CPU.
    ``method_info`` records the path that ran (``allocator``, and ``allocator_fallback_reason`` where the
    fast path fell back to peft's).

    The cell is resumable: its Trainer checkpoints keep the ``init_r``-shaped adapters and the allocation
    state, and ``PreparedMethod.restore`` reads them back (:mod:`validation.finetune.adalora_resume`); a
    resumed cell ends bit-identical on CPU to an uninterrupted one.
    """
    from peft import AdaLoraConfig, get_peft_model

    if train_steps < 2:
        raise ConfigError(f"AdaLoRA needs at least 2 training steps for its schedule, got {train_steps}")
    opts = dict(context.options.get("adalora", {}))
    target_r = int(context.lora_r)
    init_r = int(opts.get("init_r", math.ceil(1.5 * target_r)))
    tinit = int(opts.get("tinit", math.floor(float(opts.get("tinit_fraction", 0.1)) * train_steps)))
    tfinal = int(opts.get("tfinal", math.floor(float(opts.get("tfinal_fraction", 0.2)) * train_steps)))
    if tinit >= train_steps - tfinal:  # tiny runs: keep at least one budgeting step
        tinit, tfinal = 0, 0
    delta_t = int(opts.get("deltaT", 1))
    # not a profile setting (both paths compute the same allocation): the environment can pick peft's for
    # a run directory whose profile must not change
    allocator = str(opts.get("allocator", os.environ.get("GELORA_ADALORA_ALLOCATOR") or "fast"))
    shapes = target_linear_shapes(model, context.target_modules)
    _seed_all(seed)
    config = AdaLoraConfig(
        target_r=target_r,
        init_r=init_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=delta_t,
        beta1=float(opts.get("beta1", 0.85)),
        beta2=float(opts.get("beta2", 0.85)),
        orth_reg_weight=float(opts.get("orth_reg_weight", 0.1)),
        total_step=int(train_steps),
        lora_alpha=float(context.lora_alpha),  # type: ignore[arg-type]  # peft annotates int, accepts float
        **_peft_common(context),
    )
    peft_model = get_peft_model(model, config)
    initial = count_adapter_params(peft_model)
    final_budget = sum(target_r * (i + o + 1) for i, o in shapes.values())
    callback = make_adalora_callback(peft_model, allocator=allocator)
    info = {
        "target_r": target_r,
        "init_r": init_r,
        "tinit": tinit,
        "tfinal": tfinal,
        "deltaT": delta_t,
        "total_step": int(train_steps),
        "orth_reg_weight": config.orth_reg_weight,
        "initial_adapter_params": initial,
        **callback.allocator.info(),
    }

    def finalise(m: Any) -> dict[str, Any]:
        callback.allocator.materialise()
        cfg = m.peft_config[m.active_adapter] if hasattr(m, "peft_config") else None
        pattern = getattr(cfg, "rank_pattern", None) or {}
        # keys are "<module>.lora_E" or, in newer peft, "<module>.lora_E.<adapter name>"
        ranks = {
            _short_name(re.sub(r"\.lora_E(\.[^.]+)?$", "", k)): int(sum(bool(b) for b in v))
            for k, v in pattern.items()
        }
        out: dict[str, Any] = {"allocated_ranks": ranks, "schedule_calls": len(callback.calls)}
        out.update(callback.allocator.info())  # adds allocator_peft_steps if some steps went to peft
        if ranks:
            eff = 0
            for mod, r in ranks.items():
                key = next((k for k in shapes if mod.endswith(k) or k.endswith(mod)), None)
                if key is not None:
                    i, o = shapes[key]
                    eff += r * (i + o + 1)
            out["final_effective_adapter_params"] = eff
            out["total_rank"] = int(sum(ranks.values()))
        return out

    return PreparedMethod(
        peft_model, [callback], final_budget, info, finalise, resumable=True, restore=callback.resume.restore
    )


def prepare_gelora(
    model: Any, *, budget_params: int, train_steps: int, seed: int, context: MethodContext
) -> PreparedMethod:
    """GeLoRA: per-block ranks from the intrinsic dimension of the hidden states, scaled to the budget.

    The ranks come from the core, :func:`gelora.pipeline.compute_gelora_ranks`, run on the model being
    fine-tuned (its encoder's hidden states) over ``context.train_texts``, with
    ``budget=budget_params`` (the core rescales the rule's ranks to at most that many LoRA parameters)
    on the same target modules as uniform LoRA. ``lora_alpha = (context.lora_alpha / context.lora_r) * r_i``
    keeps LoRA's scaling ``alpha / r`` equal to uniform LoRA's in every block.

    Options (``context.options["gelora"]``): ``n_texts`` (default 256), ``estimator`` (``"twonn"``),
    ``estimator_params``, ``offset`` (1), ``max_tokens``, ``use_ci_upper``; other keys are passed to
    ``compute_gelora_ranks`` unchanged.

    The steps are :func:`estimate_gelora` (IDs, rule ranks, budget scaling), then
    :func:`gelora_peft_model` (``LoraConfig`` and the peft model) and :func:`gelora_info`; the ablations
    (:mod:`validation.finetune.ablations`) reuse them.
    """
    result, texts, opts = estimate_gelora(
        model, budget_params=int(budget_params), seed=seed, context=context, texts=context.train_texts
    )
    ratio = float(context.lora_alpha) / float(context.lora_r)
    peft_model = gelora_peft_model(model, result, context, alpha_ratio=ratio)
    n = count_adapter_params(peft_model)
    info = gelora_info(result, texts, peft_model, opts)
    info["alpha_ratio"] = ratio
    info["block_alphas"] = [ratio * int(r) for r in result.ranks]
    return PreparedMethod(peft_model, [], n, info)


def estimate_gelora(
    model: Any,
    *,
    budget_params: int | None,
    seed: int,
    context: MethodContext,
    texts: Sequence[str],
    **overrides: Any,
) -> tuple[Any, list[str], dict[str, Any]]:
    """Intrinsic dimensions of ``model``'s hidden states over ``texts`` and GeLoRA's ranks.

    Parameters
    ----------
    model : torch.nn.Module
        The model to fine-tune (no adapter yet); left in its training mode.
    budget_params : int or None
        Rescale the rule's ranks to at most this many adapter parameters; ``None`` keeps the rule's ranks
        (``result.ranks == result.rule_ranks``).
    seed : int
        Seed of the text subset, token sample and estimator (all processes are seeded first).
    context : MethodContext
        ``context.options["gelora"]`` gives the core's options (see :func:`prepare_gelora`).
    texts : sequence of str
        Texts of the estimate; the first ``n_texts`` are used.
    **overrides
        Replace options of ``context.options["gelora"]`` (``estimator``, ``offset``, ...).

    Returns
    -------
    (gelora.pipeline.GeLoRARanks, list of str, dict)
        The core's result (``ranks`` identical on every process of a ``torchrun`` job), the texts used and
        the options passed to the core.
    """
    try:
        from gelora.pipeline import compute_gelora_ranks
    except ImportError as exc:
        raise ConfigError(f"GeLoRA core is not available (gelora.pipeline): {exc}") from exc
    opts = dict(context.options.get("gelora", {}))
    opts.update(overrides)
    n_texts = int(opts.pop("n_texts", 256))
    # The embedding output (hidden state 0) is a function of (token id, position) only, so short,
    # repetitive task texts repeat rows structurally: on STS-B (gpu profile, 4096 sampled tokens) 63 % of
    # them were duplicates, above the core's 50 % screen meant to catch padding leaks. The core removes
    # duplicates before estimating (and still requires min_samples distinct rows), so the screen is
    # relaxed to 90 % here unless the caller sets it.
    opts.setdefault("max_duplicate_fraction", 0.9)
    texts = list(texts)[:n_texts]
    if len(texts) < 8:
        raise ConfigError(
            f"GeLoRA needs training texts for its intrinsic-dimension estimate; got {len(texts)}"
        )
    block_modules = _block_relative_modules(model, context.target_modules)
    _seed_all(seed)
    was_training = model.training
    result = compute_gelora_ranks(
        model,
        texts,
        tokenizer=context.tokenizer,
        max_length=context.max_length,
        seed=int(seed),
        device=next(model.parameters()).device,
        budget=None if budget_params is None else int(budget_params),
        target_modules=block_modules,
        **opts,
    )
    model.train(was_training)
    result.ranks = _same_on_every_rank(list(result.ranks))
    return result, texts, opts


def gelora_peft_model(
    model: Any,
    result: Any,
    context: MethodContext,
    *,
    alpha_ratio: float,
    block_alphas: Sequence[float] | None = None,
) -> Any:
    """The peft model with ``result.ranks`` per block on ``result``'s target layout.

    ``lora_alpha = alpha_ratio * r_i`` in block ``i`` unless ``block_alphas`` gives every block's alpha
    (then ``alpha_ratio`` only sets the config's default entry). A block of rank 0 gets no adapter.
    """
    from dataclasses import replace

    from peft import get_peft_model

    ranks = [int(r) for r in result.ranks]
    if not any(r > 0 for r in ranks):
        raise ConfigError(f"every block has rank 0 ({ranks}); no adapter to train")
    # rank-0 blocks get a placeholder rank here and are left out of the target modules below
    config = replace(result, ranks=[max(r, 1) for r in ranks]).to_gelora_config(
        alpha_ratio=float(alpha_ratio),
        lora_dropout=float(context.lora_dropout),
        task_type=context.task_type,
        modules_to_save=list(context.modules_to_save) if context.modules_to_save else None,
    )
    if block_alphas is None and all(r > 0 for r in ranks):
        return get_peft_model(model, config.to_lora_config())
    alphas = (
        [float(alpha_ratio) * r for r in ranks] if block_alphas is None else [float(a) for a in block_alphas]
    )
    if len(alphas) != len(ranks):
        raise ConfigError(f"{len(alphas)} block alphas for {len(ranks)} blocks")
    keys = [(i, k) for i in range(len(ranks)) if ranks[i] > 0 for k in config.layout.module_keys(i)]
    first = keys[0][0]
    lora_config = config.to_lora_config(
        r=ranks[first],
        lora_alpha=alphas[first],
        target_modules=[k for _, k in keys],
        rank_pattern={re.escape(k): ranks[i] for i, k in keys},
        alpha_pattern={re.escape(k): alphas[i] for i, k in keys},
    )
    return get_peft_model(model, lora_config)


def gelora_info(result: Any, texts: Sequence[str], peft_model: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """What a GeLoRA-like cell records about its ranks (``method_info``)."""
    return {
        "block_ranks": list(result.ranks),
        "rule_ranks": list(result.rule_ranks),
        "dimensions": list(result.dimensions),
        "estimator": result.estimator,
        "n_texts": len(texts),
        "ranks": _ranks_of(peft_model),
        "predicted_lora_parameters": result.lora_parameters,
        "options": opts,
        "timings": dict(result.timings),
    }


def _same_on_every_rank(ranks: list[Any]) -> list[Any]:
    """Under ``torchrun``, use rank 0's GeLoRA ranks everywhere (GPU kNN ties could differ per process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [ranks]
        dist.broadcast_object_list(box, src=0)
        return list(box[0])
    return ranks


def _block_relative_modules(model: Any, target_modules: Sequence[str]) -> list[str]:
    """Block-relative names (``"attention.self.query"``) of the target modules, found on the model itself.

    ``target_modules`` are full module names (what the runner passes, resolved once for every method) or
    a selection such as ``("query", "value")`` (:func:`gelora.architecture.block_relative_names`).
    """
    from gelora.architecture import block_relative_names, discover_architecture

    return block_relative_names(discover_architecture(model), target_modules)


def prepare_full(
    model: Any, *, budget_params: int, train_steps: int, seed: int, context: MethodContext
) -> PreparedMethod:
    """Full fine-tuning reference: every parameter trainable, no adapter (budget not applicable)."""
    for p in model.parameters():
        p.requires_grad_(True)
    info = {"trainable_params": count_trainable_params(model)}
    return PreparedMethod(model, [], 0, info)


def head_parameter_names(model: Any) -> list[str]:
    """Parameters of the task head: everything outside the pretrained encoder (``model.base_model_prefix``).

    For ``*ForSequenceClassification`` that is ``classifier`` (or ``score``), for ``*ForQuestionAnswering``
    ``qa_outputs``; the encoder's own pooler stays frozen, as under the adapter methods.

    Raises
    ------
    ConfigError
        The model has no base-model prefix, or nothing lies outside it.
    """
    prefix = getattr(model, "base_model_prefix", "") or ""
    if not prefix or not hasattr(model, prefix):
        raise ConfigError(f"{type(model).__name__} has no base model prefix; cannot tell its head apart")
    names = [n for n, _ in model.named_parameters() if not n.startswith(prefix + ".")]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no parameters outside its encoder {prefix!r}")
    return names


def prepare_head_only(
    model: Any, *, budget_params: int, train_steps: int, seed: int, context: MethodContext
) -> PreparedMethod:
    """The floor: only the task head (classifier / ``qa_outputs``) trains; the encoder stays frozen.

    The Trainer's checkpoints hold the head only, not the frozen encoder
    (:class:`~validation.finetune.trained_checkpoint.TrainedOnlyCheckpoints`, whose ``restore`` checks them);
    a cell resumes from them to the uninterrupted result.
    """
    from validation.finetune.trained_checkpoint import TrainedOnlyCheckpoints

    head = set(head_parameter_names(model))
    for n, p in model.named_parameters():
        p.requires_grad_(n in head)
    info = {"trainable_params": count_trainable_params(model), "head_parameters": sorted(head)}
    checkpoints = TrainedOnlyCheckpoints(model)
    return PreparedMethod(model, [checkpoints], 0, info, restore=checkpoints.restore)


__all__ = [
    "BUDGET_RTOL",
    "BUDGETED_METHODS",
    "DEFAULT_TARGET_MODULES",
    "METHODS",
    "MethodContext",
    "PreparedMethod",
    "check_budget",
    "count_adapter_params",
    "count_trainable_params",
    "get_method",
    "head_parameter_names",
    "lora_budget",
    "make_adalora_callback",
    "prepare_adalora",
    "prepare_full",
    "prepare_gelora",
    "prepare_head_only",
    "prepare_lora",
    "target_linear_shapes",
]
