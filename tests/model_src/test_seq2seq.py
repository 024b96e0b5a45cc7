"""The seq2seq model: masks, padding invariance, teacher forcing, greedy and beam search."""

import datetime as dt

import pytest
import torch

from contract.chars import BOS_ID, EOS_ID, UNK_ID, CharVocabulary, normalize
from contract.checkpoint import Seq2SeqCheckpoint
from model_src import dates
from model_src.attention import length_mask
from model_src.seq2seq import Seq2Seq, Seq2SeqConfig
from tests.seq2seq_helpers import tiny_seq2seq_checkpoint


def tiny_model(cell: str, bidirectional: bool = True) -> Seq2Seq:
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        input_vocab_size=20,
        output_vocab_size=9,
        cell=cell,
        embedding_dim=8,
        hidden_size=8,
        bidirectional=bidirectional,
        decoder_hidden_size=12,
        output_embedding_dim=4,
        attention_size=8,
        dropout=0.0,
    )
    return Seq2Seq(config).eval()


def batch(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    chars = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        chars[i, : len(r)] = torch.tensor(r)
    return chars, lengths


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_does_not_change_encoder_or_decoder_step(cell, bidirectional):
    model = tiny_model(cell, bidirectional)
    short = [5, 6, 7]
    alone = batch([short])
    padded = batch([short, [4, 5, 6, 7, 8, 9, 10, 11]])
    with torch.no_grad():
        memory_a, state_a = model.encoder(*alone)
        memory_p, state_p = model.encoder(*padded)
        torch.testing.assert_close(memory_p[0, :3], memory_a[0], atol=1e-6, rtol=0)
        assert memory_p[0, 3:].abs().max() == 0  # padding rows are zeroed
        torch.testing.assert_close(state_p[0], state_a[0], atol=1e-6, rtol=0)
        token = torch.full((1,), BOS_ID)
        mask_a, mask_p = length_mask(alone[1], 3), length_mask(padded[1], 8)
        step_a = model.decoder(token, state_a, memory_a, mask_a)
        step_p = model.decoder(token.expand(2), state_p, memory_p, mask_p)
    for a, p in zip(step_a[:2], step_p[:2], strict=True):
        torch.testing.assert_close(p[0], a[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(step_p[2][0, :3], step_a[2][0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_attention_sums_to_one_over_real_characters_only(cell):
    model = tiny_model(cell)
    chars, lengths = batch([[4, 5], [4, 5, 6, 7, 8]])
    with torch.no_grad():
        memory, state = model.encoder(chars, lengths)
        _, new_state, weights = model.decoder(
            torch.full((2,), BOS_ID), state, memory, length_mask(lengths, 5)
        )
    assert new_state.shape == (2, model.config.state_size)
    assert weights[0, 2:].abs().max() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))


def test_teacher_forcing_predicts_every_target_after_the_start():
    model = tiny_model("gru")
    chars, lengths = batch([[4, 5, 6], [7, 8]])
    targets = torch.tensor([[BOS_ID, 4, 5, EOS_ID], [BOS_ID, 6, EOS_ID, 0]])
    assert model(chars, lengths, targets).shape == (2, 3, 9)


def sequence_logprob(model: Seq2Seq, ids: list[int], chars, lengths) -> float:
    targets = torch.tensor([[BOS_ID, *ids, EOS_ID]])
    with torch.no_grad():
        logp = torch.log_softmax(model(chars, lengths, targets), -1)[0]
    return float(logp.gather(1, targets[0, 1:, None]).sum())


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_beam_of_one_is_greedy_and_beam_scores_are_log_probabilities(cell):
    from model_src.train_seq2seq import TRAINER

    model, checkpoint = TRAINER.load_checkpoint(tiny_seq2seq_checkpoint(cell))
    source = CharVocabulary(tuple(checkpoint.input_vocab))
    for text in ["22 novembre 2026", "Nov 22, '26", "2026/11/22"]:
        chars, lengths = batch([source.encode(text)])
        greedy, attention = model.greedy(chars, lengths, 14)
        one, _ = model.beam_search(chars, lengths, 14, width=1)
        assert one == greedy[0]
        assert attention[0].shape == (len(greedy[0]), len(text))
        best, score = model.beam_search(chars, lengths, 14, width=4)
        if len(best) < 14:  # it ended with </s>, which the score includes
            assert score == pytest.approx(sequence_logprob(model, best, chars, lengths), abs=1e-4)


def test_char_vocabulary_round_trips_and_maps_unseen_characters_to_unk(tmp_path):
    vocab = CharVocabulary.build(["22 nov. 2026", "a\\b\n", "年月日"])
    vocab.save(tmp_path / "v.txt")
    assert CharVocabulary.load(tmp_path / "v.txt") == vocab
    assert vocab.encode("2☃")[1] == UNK_ID
    assert vocab.decode([*vocab.encode("2026"), EOS_ID, *vocab.encode("11")]) == "2026"
    assert normalize("22\u202fnov.\u00a02026 ") == "22 nov. 2026"


def test_dates_hold_out_locales_and_follow_one_numeric_reading():
    assert not set(dates.HELDOUT_LOCALES) & set(dates.TRAIN_LOCALES)
    assert dates.ambiguous("M/d/yy", dt.date(2026, 11, 5))
    assert not dates.ambiguous("M/d/yy", dt.date(2026, 11, 22))
    assert not dates.ambiguous("MMM d, y", dt.date(2026, 11, 5))
    assert dates.ambiguous("yy. M. d.", dt.date(2026, 11, 22))
    assert not dates.ambiguous("y/MM/dd", dt.date(2026, 11, 5))
    examples = dates.generate(["en_US", "ja"], 50, seed=0)
    assert all(dt.date.fromisoformat(e.target) for e in examples)
    assert dates.generate(["fr"], 5, seed=1) == dates.generate(["fr"], 5, seed=1)


def test_training_writes_a_checkpoint_with_heldout_metrics_and_curves():
    path = tiny_seq2seq_checkpoint("gru")
    assert (path.parent / "training_curves.png").stat().st_size > 0
    checkpoint = Seq2SeqCheckpoint.of(torch.load(path, weights_only=True))
    assert checkpoint.format == "rnnserve-seq2seq/1"
    assert len(checkpoint.heldout.texts) == len(checkpoint.heldout.targets) > 0
    metrics = checkpoint.training.metrics
    assert 0 <= metrics["test_heldout_locales_exact_match"] <= 1
    assert checkpoint.input_vocab[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
