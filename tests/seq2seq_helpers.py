"""Tiny date normalisers for the seq2seq tests: trained for a few steps, cached per session."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="rnnserve-seq2seq-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.cache
def tiny_seq2seq_checkpoint(cell: str = "gru") -> Path:
    from model_src.train_seq2seq import TrainConfig, train

    out = _ROOT / f"checkpoint-{cell}"
    return train(
        TrainConfig(
            out=out,
            cell=cell,
            train_size=800,
            test_size=64,
            epochs=1,
            max_steps=40,
            batch_size=32,
            lr=1e-2,
            max_input_chars=48,
            max_output_chars=14,
            embedding_dim=16,
            hidden_size=16,
            decoder_hidden_size=24,
            output_embedding_dim=8,
            attention_size=16,
            dropout=0.0,
            threads=1,
        )
    )


@functools.cache
def tiny_seq2seq_repository(cell: str = "gru") -> Path:
    """A repository holding models/tiny-dates/1, exported the way `rnnserve export` does."""
    from export.__main__ import main as export

    repository = _ROOT / f"repository-{cell}"
    export(
        [
            str(tiny_seq2seq_checkpoint(cell)),
            "--name",
            "tiny-dates",
            "--repository",
            str(repository),
        ]
    )
    return repository
