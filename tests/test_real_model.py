"""End-to-end checks with the real default model (converted once into the user cache, ~1 min)."""

import pytest
from conftest import real_model_cache

from llm2vec_search.encoder import Encoder, check_attention

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_encoder():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("L2V_SEARCH_CACHE_DIR", str(real_model_cache()))
        yield Encoder.from_pretrained("default", device="cpu")


def test_default_model_finds_the_paraphrase(default_encoder):
    query, paraphrase, unrelated = default_encoder.encode(
        [
            "A man is playing a guitar on stage.",
            "On stage, a guitarist performs a song.",
            "The central bank raised interest rates again.",
        ]
    )
    assert float(query @ paraphrase) > float(query @ unrelated)


def test_default_model_attends_both_ways_in_fp32(default_encoder):
    check = check_attention(default_encoder.model)
    assert check.bidirectional, check
    assert default_encoder.dim == 640
