from pathlib import Path

import pytest
import torch

from contract.checkpoint import CheckpointError, ClassifierCheckpoint
from model_src.train import TRAINER


def test_training_writes_a_safe_checkpoint_and_a_plot(tiny_checkpoints: dict[str, Path]):
    for cell, path in tiny_checkpoints.items():
        saved = torch.load(path, weights_only=True)  # plain tensors and builtins only
        checkpoint = ClassifierCheckpoint.of(saved)  # the schema export reads it with
        assert checkpoint.config["cell"] == cell
        assert checkpoint.labels == ["negative", "positive"]
        assert checkpoint.vocab[:2] == ["<pad>", "<unk>"]
        assert len(checkpoint.heldout.texts) == len(checkpoint.heldout.labels) > 0
        assert (path.parent / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_tiny_models_learn_the_tiny_task(tiny_checkpoints: dict[str, Path]):
    for path in tiny_checkpoints.values():
        model, checkpoint = TRAINER.load_checkpoint(path)
        assert checkpoint.training.metrics["dev_accuracy"] >= 0.9
        assert not model.training


def test_a_checkpoint_that_breaks_its_schema_is_refused_in_one_line(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
):
    saved = torch.load(tiny_checkpoints["lstm"], weights_only=True)
    saved["heldout"]["labels"] = saved["heldout"]["labels"][:-1]  # one label short
    del saved["lowercase"]
    broken = tmp_path / "checkpoint.pt"
    torch.save(saved, broken)
    with pytest.raises(CheckpointError) as refused:
        TRAINER.load_checkpoint(broken)
    message = str(refused.value)
    assert message.startswith(f"{broken}: not a ClassifierCheckpoint (")
    assert "2 problem(s)" in message and "\n" not in message
    saved["lowercase"] = True
    saved["heldout"]["labels"].append(0)
    saved["format"] = "rnnserve-forecast/1"  # another task's layout
    torch.save(saved, broken)
    with pytest.raises(CheckpointError, match="format"):
        TRAINER.load_checkpoint(broken)


def test_every_builtin_trainer_writes_the_format_the_registry_routes():
    from contract import registry

    for parts in registry.tasks().values():
        if parts.trainer is not None:
            schema = registry.load(parts.trainer).checkpoint
            assert schema.model_fields["format"].default == parts.checkpoint_format
