"""Training data: reading files, packing MNTP blocks, BERT-style masking, pairs."""

import gzip
import json
from collections import Counter

import pytest
import torch
from conftest import TRAINING_TEXT, build_tokenizer

from llm2vec_search import L2VError
from llm2vec_search.training.data import (
    IGNORE_INDEX,
    Pair,
    PairSource,
    mask_for_mntp,
    mixed_batches,
    mntp_mask_id,
    packed_blocks,
    read_pairs,
    read_sources,
    read_texts,
)


def test_read_texts_from_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n  second line  \n")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "a paragraph", "title": "t"})
        + "\n\n"
        + json.dumps({"body": "x", "text": " "})
        + "\n"
    )
    assert read_texts([tmp_path / "a.txt", tmp_path / "b.jsonl"]) == [
        "first line",
        "second line",
        "a paragraph",
    ]
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "other field"}) + "\n")
    assert read_texts([tmp_path / "c.jsonl"], field="body") == ["other field"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "ok"}\n{not json\n', r"bad.jsonl:2: not a JSON line"),
        ("field.jsonl", '{"title": "no text"}\n', r"field.jsonl:1: no string field 'text'"),
        ("list.jsonl", "[1, 2]\n", "expected a JSON object"),
        ("empty.txt", "\n \n", "no training text"),
    ],
)
def test_bad_text_files_are_clear_errors(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(L2VError, match=message):
        read_texts([tmp_path / name])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(L2VError, match="training data file not found"):
        read_texts([tmp_path / "nope.txt"])


def test_read_pairs(tmp_path):
    rows = [{"query": "q1", "positive": "p1", "negative": "n1"}, {"query": "q2", "positive": "p2"}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = read_pairs([tmp_path / "pairs.jsonl"])
    assert [(p.query, p.positive, p.negative) for p in pairs] == [("q1", "p1", "n1"), ("q2", "p2", None)]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"query": "q"}) + "\n")
    with pytest.raises(L2VError, match=r"bad\.jsonl:1: needs 'query' and 'positive'"):
        read_pairs([tmp_path / "bad.jsonl"])


def test_gzipped_jsonl_is_read_like_plain(tmp_path):
    rows = [{"query": "q1", "positive": "p1"}, {"query": "q2", "positive": "p2", "negative": "n2"}]
    with gzip.open(tmp_path / "pairs.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows))
    assert [p.query for p in read_pairs([tmp_path / "pairs.jsonl.gz"])] == ["q1", "q2"]
    with gzip.open(tmp_path / "texts.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"text": "a paragraph"}) + "\n")
    assert read_texts([tmp_path / "texts.jsonl.gz"]) == ["a paragraph"]
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(L2VError, match="cannot read training data"):
        read_pairs([tmp_path / "broken.jsonl.gz"])


def test_sources_take_weights_and_instructions(tmp_path):
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text(json.dumps({"query": f"q {name}", "positive": "p"}) + "\n")
    a, b = read_sources([f"{tmp_path / 'a.jsonl'}:3", str(tmp_path / "b.jsonl")], {"b.jsonl": "Find it"})
    assert (a.name, a.weight, a.instruction) == ("a.jsonl", 3.0, None)
    assert (b.name, b.weight, b.instruction) == ("b.jsonl", 1.0, "Find it")
    with pytest.raises(L2VError, match="weight must be a positive number"):
        read_sources([f"{tmp_path / 'a.jsonl'}:0"])
    with pytest.raises(L2VError, match=r"not in the data: c\.jsonl"):
        read_sources([str(tmp_path / "a.jsonl")], {"c.jsonl": "x"})


def test_mixed_batches_come_whole_from_one_source_in_proportion_to_weight():
    sources = [
        PairSource("a", [Pair(f"a{i}", "p") for i in range(7)], weight=3.0),
        PairSource("b", [Pair(f"b{i}", "p") for i in range(5)], weight=1.0),
    ]
    batches = list(zip(range(400), mixed_batches(sources, 4, seed=1), strict=False))
    for _, (source, pairs) in batches:
        assert {pair.query[0] for pair in pairs} == {source.name}
    counts = Counter(source.name for _, (source, _) in batches)
    assert 0.68 < counts["a"] / 400 < 0.82
    again = mixed_batches(sources, 4, seed=1)
    assert [next(again) for _ in range(20)] == [batch for _, batch in batches[:20]]


def test_packed_blocks_cut_the_shuffled_token_stream_into_full_blocks():
    tokenizer = build_tokenizer()
    texts = sorted(set(TRAINING_TEXT))
    stream = packed_blocks(tokenizer, texts, block_length=16, seed=3)
    blocks = [next(stream) for _ in range(6)]
    assert all(len(block) == 16 for block in blocks)
    joined = [token for block in blocks for token in block]
    # The blocks are consecutive texts, each tokenized with its special tokens (a <bos> in front).
    all_ids = {tuple(tokenizer(text)["input_ids"]) for text in texts}
    first = next(ids for ids in all_ids if tuple(joined[: len(ids)]) == ids)
    assert first[0] == tokenizer.bos_token_id
    again = packed_blocks(tokenizer, texts, block_length=16, seed=3)
    assert [next(again) for _ in range(6)] == blocks
    other = packed_blocks(tokenizer, texts, block_length=16, seed=4)
    assert [next(other) for _ in range(6)] != blocks


def test_masking_picks_ordinary_tokens_only_and_labels_exactly_those():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 300, (64, 128), generator=generator)
    ids[:, 0] = 2  # <bos>
    ids[:, 50] = 1  # an <eos> inside the block
    masked, labels = mask_for_mntp(ids, [0, 1, 2, 3, 4], 4, 300, 0.2, generator)
    picked = labels != IGNORE_INDEX
    assert not picked[:, 0].any() and not picked[:, 50].any()
    assert torch.equal(labels[picked], ids[picked])
    assert torch.equal(masked[~picked], ids[~picked])  # nothing outside the picked positions changes
    share = picked.float().mean().item()
    assert 0.18 < share < 0.22
    as_mask = (masked[picked] == 4).float().mean().item()
    unchanged = (masked[picked] == ids[picked]).float().mean().item()
    assert 0.76 < as_mask < 0.84
    assert 0.07 < unchanged < 0.14  # 10% kept + the random draws that hit the same id
    assert 0.05 < 1 - as_mask - unchanged < 0.13  # replaced by a random token


def test_mask_token_or_underscore():
    tokenizer = build_tokenizer()
    assert mntp_mask_id(tokenizer) == tokenizer.mask_token_id == 4
    tokenizer.mask_token = None
    underscore = mntp_mask_id(tokenizer)
    assert tokenizer.decode([underscore]) == "_"
