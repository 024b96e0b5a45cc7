"""Seq2seq export: two graphs, a greedy decode equal to PyTorch's, a valid manifest."""

import json

import numpy as np
import pytest
import torch

from contract import registry
from contract.chars import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharVocabulary, normalize
from contract.manifest import Manifest, sha256_of
from export.common import ParityError, pad_ids
from export.driver import Options, write_version
from export.seq2seq import Seq2SeqExporter, onnx_greedy
from model_src.train_seq2seq import TRAINER
from tests.seq2seq_helpers import tiny_seq2seq_checkpoint, tiny_seq2seq_repository


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_greedy_decode_equals_pytorch_on_mixed_lengths(cell):
    folder = tiny_seq2seq_repository(cell) / "tiny-dates" / "1"
    model, checkpoint = TRAINER.load_checkpoint(tiny_seq2seq_checkpoint(cell))
    source = CharVocabulary(tuple(checkpoint.input_vocab))
    ids = [source.encode(normalize(t)) for t in checkpoint.heldout.texts[:16]]
    ids += [[5], [UNK_ID] * 48]  # one character, and the longest input served
    assert len({len(x) for x in ids}) > 3
    got, _ = onnx_greedy(folder, ids, 14, (PAD_ID, BOS_ID, EOS_ID))
    chars, lengths = (torch.from_numpy(a) for a in pad_ids(ids, PAD_ID))
    expected, _ = model.greedy(chars, lengths, 14)
    assert got == expected


def test_manifest_describes_both_graphs_vocabularies_and_heldout_metrics():
    folder = tiny_seq2seq_repository("gru") / "tiny-dates" / "1"
    manifest = Manifest.read(folder)
    assert manifest.task == "seq2seq"
    assert set(manifest.graphs) == {"encoder", "decoder"}
    decoder = manifest.graphs["decoder"]
    assert [t.name for t in decoder.inputs] == ["token", "state", "memory", "mask"]
    assert [t.name for t in decoder.outputs] == ["logits", "next_state", "attention"]
    prep = manifest.preprocessing
    assert prep.kind == "characters" and prep.max_output_chars == 14
    for name, digest in manifest.files.items():
        assert sha256_of(folder / name) == digest
    assert manifest.export.parity_max_abs_diff <= manifest.export.parity_tolerance
    metrics = manifest.training.metrics
    assert {"test_seen_locales_exact_match", "test_heldout_locales_exact_match"} <= set(metrics)
    assert 0 <= metrics["test_heldout_locales_exact_match_onnx"] <= 1
    assert json.loads((folder / "manifest.json").read_text())["version"] == 1


def test_export_refuses_a_decode_beyond_the_tolerance(tmp_path):
    exporter = Seq2SeqExporter.from_checkpoint(tiny_seq2seq_checkpoint("gru"))
    with pytest.raises(ParityError, match="differs from PyTorch"):
        write_version("seq2seq", exporter, tmp_path, "refused", 1, Options(tolerance=-1.0))
    assert not np.any([p.name == "manifest.json" for p in tmp_path.iterdir()])


def test_our_model_goes_through_the_exporter_a_users_modules_do():
    """One class for both: ours is its encoder and decoder modules, kept to the user contract
    (shapes and padding checked), with our characters and held-out facts on top."""
    model, checkpoint = TRAINER.load_checkpoint(tiny_seq2seq_checkpoint("gru"))
    exporter = Seq2SeqExporter.from_checkpoint(tiny_seq2seq_checkpoint("gru"))
    assert registry.load(registry.get("seq2seq").exporter) is Seq2SeqExporter
    assert type(exporter.encoder) is type(model.encoder)
    assert type(exporter.decoder) is type(model.decoder)
    assert exporter.state_size == model.config.state_size
    assert exporter.memory_size == 2 * checkpoint.config["hidden_size"]
    assert (exporter.text.bos_id, exporter.text.eos_id, exporter.text.pad_id) == (2, 3, 0)
    assert exporter.training == checkpoint.training
    text = checkpoint.heldout.texts[0]
    assert exporter.text.encode(f"  {text} ")[1] == exporter.text.encode(text)[1]  # trimmed
