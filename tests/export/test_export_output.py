"""What `rnnserve export` prints: its own lines only. onnxruntime's advice ("Please consider to
run pre-processing before quantization") and its red log lines for a graph that fails in a run
stay out of it; a refusal is one line and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

VOCAB = ["[UNK]", "a", "b", "c", "d", "e", " ", "[PAD]"]
FIXED_BATCH = '''
import torch
from torch import nn


class FixedBatch(nn.Module):
    """Reads the state at lengths - 1 with the batch size turned into a Python number: the
    exporter keeps it as a constant, so the graph fails in onnxruntime on other batch sizes."""

    def __init__(self, vocab_size, pad_id):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 8, padding_idx=pad_id)
        self.gru = nn.GRU(8, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, tokens, lengths):
        states, _ = self.gru(self.embedding(tokens))
        last = (lengths - 1).view(-1, 1, 1).expand(int(tokens.shape[0]), 1, 8)
        return self.head(states.gather(1, last).squeeze(1))


def build(**config):
    return FixedBatch(**config)
'''


def arguments(tmp_path: Path, module: str, *extra: str) -> list[str]:
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB))
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": len(VOCAB), "pad_id": 7}))
    return [
        "--task", "classify", "--module", module,
        "--config", str(tmp_path / "config.json"), "--vocab", str(tmp_path / "vocab.txt"),
        "--tokenizer", "chars", "--pad-token", "[PAD]", "--unk-token", "[UNK]",
        "--labels", "negative,positive", "--name", "mine", "--repository",
        str(tmp_path / "models"), *extra,
    ]  # fmt: skip


def run_export(tmp_path: Path, module: str, *extra: str) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, as a user runs it: everything it prints is captured
    (in process, pytest's own logging would take onnxruntime's Python warnings first)."""
    argv = [sys.executable, "-m", "export", *arguments(tmp_path, module, *extra)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_an_int8_export_prints_only_where_it_published(tmp_path):
    data = tmp_path / "eval.tsv"
    data.write_text("".join(
        f"{i % 2}\t{'abcde'[: 1 + i % 5]} {'edcba'[: 1 + i % 3]}\n" for i in range(40)
    ))  # fmt: skip
    done = run_export(
        tmp_path, f"{ROOT / 'tests' / 'user_models' / 'modules.py'}:build", "--quantize", "int8",
        "--eval-data", str(data), "--max-accuracy-drop", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"published {tmp_path / 'models' / 'mine' / '1'}\n"
    assert done.stderr == ""


def test_a_graph_that_fails_in_onnxruntime_is_one_line_of_export_and_nothing_else(tmp_path, capfd):
    """In process: onnxruntime's log lines go to file descriptor 2, which capfd reads."""
    from export.__main__ import main as export

    (tmp_path / "fixed_batch.py").write_text(FIXED_BATCH)
    with pytest.raises(SystemExit) as exit_:
        export(arguments(tmp_path, f"{tmp_path / 'fixed_batch.py'}:build"))
    out, err = capfd.readouterr()
    assert exit_.value.code == 1 and out == ""
    assert err.startswith(
        "rnnserve export: refused: the exported graph fails on a batch of 5 sequences"
    ), err
    assert len(err.splitlines()) == 1, err


def test_eval_data_is_read_by_its_header_as_glue_ships_it(tmp_path):
    """SST-2's dev.tsv has `sentence<TAB>label`; headerless lines are `label<TAB>text`."""
    from export.classifier import read_eval_data

    glue = tmp_path / "dev.tsv"
    glue.write_text("sentence\tlabel\nit 's a charming film .\t1\ndull\t0\n")
    plain = tmp_path / "plain.tsv"
    plain.write_text("positive\tit 's a charming film .\n0\tdull\n")
    expected = [("it 's a charming film .", 1), ("dull", 0)]
    assert read_eval_data(glue, ["negative", "positive"]) == expected
    assert read_eval_data(plain, ["negative", "positive"]) == expected
