import pytest
import torch

from model_src.classifier import ClassifierConfig, TextClassifier
from model_src.encoder import reverse_within_length

CONFIGS = [
    dict(cell="lstm", bidirectional=True, num_layers=1),
    dict(cell="gru", bidirectional=True, num_layers=1),
    dict(cell="lstm", bidirectional=False, num_layers=2),
    dict(cell="gru", bidirectional=True, num_layers=2),
]


def make_model(**overrides) -> TextClassifier:
    torch.manual_seed(0)
    config = ClassifierConfig(
        vocab_size=50,
        num_classes=3,
        embedding_dim=8,
        hidden_size=6,
        attention_size=5,
        dropout=0.0,
        **overrides,
    )
    return TextClassifier(config).eval()


def test_reverse_within_length_keeps_padding_in_place():
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_within_length(x, torch.tensor([3, 5]))
    assert out.squeeze(-1).tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_padding_does_not_change_prediction(overrides):
    model = make_model(**overrides)
    tokens = torch.randint(2, 50, (1, 6))
    with torch.no_grad():
        logits, weights = model(tokens, torch.tensor([6]))
        padded = torch.cat([tokens, torch.zeros(1, 9, dtype=torch.long)], dim=1)
        padded_logits, padded_weights = model(padded, torch.tensor([6]))
        # Junk rather than zeros in the padding must not matter either.
        junk = torch.cat([tokens, torch.randint(2, 50, (1, 9))], dim=1)
        junk_logits, _ = model(junk, torch.tensor([6]))
    torch.testing.assert_close(logits, padded_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, junk_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, padded_weights[:, :6], atol=1e-5, rtol=0)
    assert torch.all(padded_weights[:, 6:] == 0)


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_mixed_length_batch_matches_one_at_a_time(overrides):
    model = make_model(**overrides)
    lengths = [7, 1, 4, 2]
    sequences = [torch.randint(2, 50, (n,)) for n in lengths]
    batch = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = seq
    with torch.no_grad():
        logits, weights = model(batch, torch.tensor(lengths))
        for row, seq in enumerate(sequences):
            alone, alone_weights = model(seq.unsqueeze(0), torch.tensor([len(seq)]))
            torch.testing.assert_close(logits[row], alone[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(
                weights[row, : len(seq)], alone_weights[0], atol=1e-5, rtol=0
            )
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(lengths)))


def test_bidirectional_encoder_reads_both_ways():
    """The first token's state must depend on later tokens when bidirectional."""
    model = make_model(cell="gru", bidirectional=True)
    a = torch.tensor([[5, 6, 7]])
    b = torch.tensor([[5, 6, 8]])
    lengths = torch.tensor([3])
    with torch.no_grad():
        states_a = model.encoder(model.embedding(a), lengths)
        states_b = model.encoder(model.embedding(b), lengths)
    assert not torch.allclose(states_a[0, 0], states_b[0, 0])
