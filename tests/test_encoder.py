"""`Encoder.encode`: order, batching invariance, instructions, truncation, bad input."""

import logging

import numpy as np
import pytest
from conftest import tiny_encoder

from llm2vec_search import L2VError
from llm2vec_search.encoder import POOLING_MODES

TEXTS = [
    "The cat sat on the mat.",
    "A dog is running in the park with a ball and the cat looked at the dog for a long while.",
    "Stock markets fell.",
    "Proteins fold into three dimensional structures.",
    "Vector search finds similar documents by meaning, even when they share no words at all.",
]


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_same_text_agrees_in_any_batch(pooling):
    encoder = tiny_encoder(pooling=pooling)
    together = encoder.encode(TEXTS, batch_size=64)
    alone = np.stack([encoder.encode([text])[0] for text in TEXTS])
    small_batches = encoder.encode(TEXTS, batch_size=2, max_batch_tokens=40)
    np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(small_batches, alone, atol=1e-4)


def test_output_is_float32_normalized_and_in_input_order(encoder):
    vectors = encoder.encode(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reversed_vectors = encoder.encode(TEXTS[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)


def test_normalize_false_keeps_raw_norms(encoder):
    raw = encoder.encode(TEXTS[:2], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_batches_follow_the_token_budget(encoder):
    encoder.encode(TEXTS, max_batch_tokens=30)
    assert encoder.last_stats.batches > 1
    encoder.encode(TEXTS, max_batch_tokens=100_000)
    assert encoder.last_stats.batches == 1


def test_instruction_is_attended_but_not_pooled(encoder):
    text = "cats and dogs"
    plain = encoder.tokenize([text])[0]
    instructed = encoder.tokenize([text], instruction="Retrieve passages about pets")[0]
    text_ids = [plain.ids[i] for i in plain.pool_positions]
    # The pooled positions hold exactly the text's tokens, none of the instruction's ...
    assert [instructed.ids[i] for i in instructed.pool_positions] == text_ids
    assert len(instructed.ids) > len(plain.ids)
    assert min(instructed.pool_positions) > 1
    # ... yet the instruction changes the vector, because the text tokens attend to it.
    with_instruction = encoder.encode([text], instruction="Retrieve passages about pets")
    without = encoder.encode([text])
    assert float(with_instruction[0] @ without[0]) < 0.9999


def test_special_tokens_are_not_pooled_in_mean(encoder):
    item = encoder.tokenize(["hello world"])[0]
    assert 0 not in item.pool_positions  # position 0 is <bos>
    assert item.ids[0] == encoder.tokenizer.bos_token_id


def test_last_token_pooling_appends_eos():
    encoder = tiny_encoder(pooling="last_token")
    item = encoder.tokenize(["hello world"])[0]
    assert item.ids[-1] == encoder.tokenizer.eos_token_id
    assert item.pool_positions == [len(item.ids) - 1]


def test_query_instruction_is_used_by_encode_queries():
    encoder = tiny_encoder(query_instruction="Find the answer")
    np.testing.assert_allclose(
        encoder.encode_queries(["why is the sky blue"]),
        encoder.encode(["why is the sky blue"], instruction="Find the answer"),
    )


def test_repeated_queries_come_from_the_cache_without_a_forward_pass(encoder):
    first = encoder.encode(TEXTS[:3], instruction="Find", cache=True)
    assert encoder.last_stats.texts == 3
    again = encoder.encode([TEXTS[2], TEXTS[0], TEXTS[3]], instruction="Find", cache=True)
    assert encoder.last_stats.texts == 1  # only the new text was embedded
    np.testing.assert_array_equal(again[:2], first[[2, 0]])
    np.testing.assert_allclose(again[2], encoder.encode([TEXTS[3]], instruction="Find")[0], atol=1e-6)
    other = encoder.encode([TEXTS[0]], instruction="Other", cache=True)  # the instruction is in the key
    assert encoder.last_stats.texts == 1
    assert not np.allclose(other[0], first[0])


def test_cached_encoding_refuses_what_encode_refuses(encoder):
    with pytest.raises(L2VError, match="not a string"):
        encoder.encode([["a", "list"]], cache=True)
    with pytest.raises(L2VError, match="empty"):
        encoder.encode_queries(["  "])


def test_query_cache_keeps_only_the_most_recent():
    encoder = tiny_encoder(query_cache_size=2)
    encoder.encode(TEXTS[:3], cache=True)  # more than the cache holds: all three are returned, two kept
    encoder.encode([TEXTS[2], TEXTS[1]], cache=True)
    assert encoder.last_stats.texts == 0
    encoder.encode([TEXTS[0]], cache=True)
    assert encoder.last_stats.texts == 1


def test_truncation_is_counted_and_logged(caplog):
    encoder = tiny_encoder(max_length=16)
    long_text = "the cat sat on the mat " * 5000  # ~115k characters
    with caplog.at_level(logging.WARNING):
        vectors = encoder.encode([long_text, "short text"])
    assert encoder.last_stats.truncated == 1
    assert "1 of 2 texts were truncated to 16 tokens" in caplog.text
    assert len(encoder.tokenize([long_text])[0].ids) == 16
    assert np.isfinite(vectors).all()


def test_empty_list_gives_empty_array(encoder):
    vectors = encoder.encode([])
    assert vectors.shape == (0, encoder.dim)
    assert vectors.dtype == np.float32


@pytest.mark.parametrize("bad", ["", "   \n\t"])
def test_empty_or_whitespace_text_is_a_clear_error(encoder, bad):
    with pytest.raises(L2VError, match="text 1 is empty or only whitespace"):
        encoder.encode(["fine", bad])


def test_non_string_is_a_clear_error(encoder):
    with pytest.raises(L2VError, match="text 0 is a int"):
        encoder.encode([3])


def test_instruction_longer_than_max_length_is_a_clear_error():
    encoder = tiny_encoder(max_length=8)
    with pytest.raises(L2VError, match="instruction alone fills"):
        encoder.encode(["x"], instruction="a very long instruction " * 10)
