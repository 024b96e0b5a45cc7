from pathlib import Path

import torch

from model_src.train import TRAINER


def test_training_writes_a_safe_checkpoint_and_a_plot(tiny_checkpoints: dict[str, Path]):
    for cell, path in tiny_checkpoints.items():
        checkpoint = torch.load(path, weights_only=True)  # plain tensors and builtins only
        assert checkpoint["config"]["cell"] == cell
        assert checkpoint["labels"] == ["negative", "positive"]
        assert checkpoint["vocab"][:2] == ["<pad>", "<unk>"]
        assert (path.parent / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_tiny_models_learn_the_tiny_task(tiny_checkpoints: dict[str, Path]):
    for path in tiny_checkpoints.values():
        model, checkpoint = TRAINER.load_checkpoint(path)
        assert checkpoint["training"]["metrics"]["dev_accuracy"] >= 0.9
        assert not model.training
