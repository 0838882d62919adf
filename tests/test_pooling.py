"""Pooling modes: the pooled positions alone decide the result, whichever side the padding is on."""

import pytest
import torch

from llm2vec_search.encoder import POOLING_MODES, pool


def _pad(hidden: torch.Tensor, positions: list[int], pad: int, side: str):
    """Embed one (seq, dim) row into a width seq+pad batch row padded on `side`."""
    seq, dim = hidden.shape
    padded = torch.full((1, seq + pad, dim), 99.0)
    mask = torch.zeros(1, seq + pad, dtype=torch.long)
    offset = pad if side == "left" else 0
    padded[0, offset : offset + seq] = hidden
    mask[0, [offset + p for p in positions]] = 1
    return padded, mask


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_left_and_right_padding_agree(mode):
    hidden = torch.randn(6, 4)
    positions = [5] if mode == "last_token" else [0] if mode == "bos" else [1, 2, 3, 4]
    left = pool(*_pad(hidden, positions, 3, "left"), mode)
    right = pool(*_pad(hidden, positions, 3, "right"), mode)
    unpadded = pool(*_pad(hidden, positions, 0, "right"), mode)
    torch.testing.assert_close(left, unpadded)
    torch.testing.assert_close(right, unpadded)


def test_mean_averages_only_pooled_positions():
    hidden = torch.arange(12.0).reshape(1, 4, 3)
    mask = torch.tensor([[0, 1, 1, 0]])
    torch.testing.assert_close(pool(hidden, mask, "mean"), hidden[:, 1:3].mean(1))


def test_weighted_mean_weights_later_tokens_more():
    hidden = torch.tensor([[[1.0], [2.0], [4.0]]])
    mask = torch.tensor([[1, 1, 1]])
    expected = (1 * 1 + 2 * 2 + 3 * 4) / 6
    assert pool(hidden, mask, "weighted_mean").item() == pytest.approx(expected)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(torch.zeros(1, 2, 2), torch.ones(1, 2), "max")
