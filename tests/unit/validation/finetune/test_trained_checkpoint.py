"""Checkpoints of the trained tensors only (validation/finetune/trained_checkpoint.py), without training.

The resume path through the runner is tested in test_geolora_resume.py (GeoLoRA and head only, bit-identical
on CPU); here: what a save holds inside and outside training, and which files ``restore`` refuses, with which
error (an incomplete checkpoint restarts the cell, one of another configuration fails it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gelora.errors import CheckpointMismatchError, IncompleteCheckpointError
from synthetic.tiny_models import save_tiny_model
from validation.finetune import trained_checkpoint as tc
from validation.finetune.methods import prepare_head_only


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model("bert", tmp_path_factory.mktemp("trained_checkpoint") / "bert")


@pytest.fixture
def prepared(model_dir: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    return prepare_head_only(model, budget_params=0, train_steps=1, seed=0, context=None)


def _names(directory: Path) -> set[str]:
    with safe_open(str(directory / tc.MODEL_FILE), framework="pt") as f:
        return set(f.keys())


def test_saves_hold_the_trained_tensors_while_training_and_the_whole_model_otherwise(
    prepared: Any, tmp_path: Path
) -> None:
    model = prepared.model
    (checkpoints,) = prepared.callbacks
    assert tc.trained_names(model) == ["classifier.weight", "classifier.bias"]
    model.save_pretrained(tmp_path / "before")
    assert _names(tmp_path / "before") == set(model.state_dict())
    checkpoints.on_train_begin(None, None, None)
    model.save_pretrained(tmp_path / "training", state_dict=None, is_main_process=True)
    assert _names(tmp_path / "training") == {"classifier.weight", "classifier.bias"}
    checkpoints.restore(str(tmp_path / "training"))
    checkpoints.restore(str(tmp_path / "before"))  # a whole-model checkpoint (the older code's) is accepted
    checkpoints.on_train_end(None, None, None)
    model.save_pretrained(tmp_path / "after")
    assert _names(tmp_path / "after") == set(model.state_dict())


def _write(folder: Path, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir()
    save_file(tensors, str(folder / tc.MODEL_FILE), metadata={"format": "pt"})
    return folder


def test_restore_refuses_a_checkpoint_of_another_configuration(prepared: Any, tmp_path: Path) -> None:
    head = {k: v.detach().clone() for k, v in tc.trained_state_dict(prepared.model).items()}
    unknown = _write(tmp_path / "unknown", {**head, "classifier.extra.weight": torch.zeros(2)})
    with pytest.raises(CheckpointMismatchError, match="classifier.extra.weight"):
        prepared.restore(str(unknown))
    shape = _write(tmp_path / "shape", {**head, "classifier.weight": torch.zeros(3, 32)})
    with pytest.raises(CheckpointMismatchError, match="classifier.weight"):
        prepared.restore(str(shape))


def test_restore_calls_a_checkpoint_incomplete_when_it_cannot_be_resumed(
    prepared: Any, tmp_path: Path
) -> None:
    with pytest.raises(IncompleteCheckpointError, match="not found"):
        prepared.restore(str(tmp_path))
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / tc.MODEL_FILE).write_bytes(b"\x00\x01 a save cut short")
    with pytest.raises(IncompleteCheckpointError, match="cannot be read"):
        prepared.restore(str(tmp_path / "cut"))
    bias = _write(tmp_path / "bias", {"classifier.bias": torch.zeros(2)})
    with pytest.raises(
        IncompleteCheckpointError, match=r"lacks 1 trained tensors \(\['classifier.weight'\]\)"
    ):
        prepared.restore(str(bias))


def test_a_trained_weight_tied_to_a_saved_one_is_not_missing(tmp_path: Path) -> None:
    """``save_pretrained`` writes a tied weight once (the MLM decoder shares the word embeddings): with both
    trained, a complete checkpoint was called incomplete, and the cell restarted from step 0 at every resume."""
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    model = BertForMaskedLM(cfg)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("cls.") or "word_embeddings" in name)
    ck = tc.TrainedOnlyCheckpoints(model)
    ck.on_train_begin(None, None, None)
    model.save_pretrained(tmp_path, state_dict=None)
    saved = _names(tmp_path)
    tied = {"bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"}
    assert tied <= set(tc.trained_names(model)) and len(tied & saved) == 1  # written once
    ck.restore(str(tmp_path))  # complete
    tensors = {}
    with safe_open(str(tmp_path / tc.MODEL_FILE), framework="pt") as f:
        for k in f.keys():
            if k not in tied:
                tensors[k] = f.get_tensor(k)
    save_file(tensors, str(tmp_path / tc.MODEL_FILE), metadata={"format": "pt"})
    with pytest.raises(IncompleteCheckpointError, match="lacks 2 trained tensors"):
        ck.restore(str(tmp_path))  # neither name of the tied pair saved: incomplete
