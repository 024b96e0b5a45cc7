import torch

from model_src.attention import AdditiveAttention, length_mask, masked_softmax


def test_length_mask_marks_real_positions():
    mask = length_mask(torch.tensor([3, 1]), 4)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]


def test_attention_weights_are_zero_on_padding_and_sum_to_one():
    torch.manual_seed(0)
    attention = AdditiveAttention(key_size=6, attention_size=5)
    keys = torch.randn(3, 7, 6)
    lengths = torch.tensor([7, 4, 1])
    context, weights = attention(keys, length_mask(lengths, 7))
    assert context.shape == (3, 6)
    for row, n in enumerate(lengths.tolist()):
        assert torch.all(weights[row, n:] == 0)
        assert torch.all(weights[row, :n] > 0)
        torch.testing.assert_close(weights[row].sum(), torch.tensor(1.0))


def test_padding_keys_do_not_change_the_context():
    torch.manual_seed(0)
    attention = AdditiveAttention(key_size=4, attention_size=3)
    keys = torch.randn(1, 3, 4)
    padded = torch.cat([keys, 1e3 * torch.randn(1, 5, 4)], dim=1)
    short, _ = attention(keys, length_mask(torch.tensor([3]), 3))
    long, _ = attention(padded, length_mask(torch.tensor([3]), 8))
    torch.testing.assert_close(short, long, atol=1e-6, rtol=0)


def test_query_shifts_the_scores():
    torch.manual_seed(0)
    attention = AdditiveAttention(key_size=4, attention_size=3, query_size=2)
    keys, mask = torch.randn(1, 5, 4), torch.ones(1, 5, dtype=torch.bool)
    _, a = attention(keys, mask, torch.zeros(1, 2))
    _, b = attention(keys, mask, torch.ones(1, 2))
    assert not torch.allclose(a, b)


def test_masked_softmax_of_a_single_real_position_is_one():
    weights = masked_softmax(torch.randn(2, 3), torch.tensor([[True, False, False]] * 2))
    assert weights.tolist() == [[1.0, 0.0, 0.0]] * 2
