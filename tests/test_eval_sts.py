"""STS eval: both file formats, each malformed line, and the score through a tiny encoder and the CLI."""

import json

import numpy as np
import pytest
from conftest import SHARED_DATA, tiny_encoder

from llm2vec_search.errors import L2VError
from llm2vec_search.evaluation.sts import StsPair, evaluate_sts, load_sts, spearman
from tests.conftest import run_cli

STSB_LINES = [
    "main-captions\tMSRvid\t2012test\t0024\t2.500\tA girl is styling her hair.\tA girl is brushing her hair.",
    "main-captions\tMSRvid\t2012test\t0033\t3.600\tMen play soccer.\tBoys are playing soccer.",
    # extra trailing columns (sources) are ignored, and a quote is just a character
    'main-news\theadlines\t2016\t0001\t0.8\tThe "cat" sat.\tStocks fell.\tsource-a\tsource-b',
]


def test_stsb_lines_read_the_first_seven_fields(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text("\n".join(STSB_LINES) + "\n")
    assert load_sts(path) == [
        StsPair(2.5, "A girl is styling her hair.", "A girl is brushing her hair."),
        StsPair(3.6, "Men play soccer.", "Boys are playing soccer."),
        StsPair(0.8, 'The "cat" sat.', "Stocks fell."),
    ]


def test_simple_format_with_and_without_a_header(tmp_path):
    plain = tmp_path / "plain.tsv"
    plain.write_text("4.5\ta cat\ta kitten\n\n0\ta cat\tthe stock market\n")
    assert load_sts(plain) == [StsPair(4.5, "a cat", "a kitten"), StsPair(0.0, "a cat", "the stock market")]
    headed = tmp_path / "headed.tsv"
    headed.write_text("score\tsentence1\tsentence2\n1.0\tx\ty\n")
    assert load_sts(headed) == [StsPair(1.0, "x", "y")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.0\tonly two\n", "line 1: 2 tab-separated fields"),
        ("1.0\ta\tb\n2.0\ta\tb\tc\n", "line 2: 4 fields, expected score<TAB>s1<TAB>s2"),
        ("1.0\ta\tb\nhigh\ta\tb\n", "line 2: score 'high' is not a number"),
        (
            STSB_LINES[0] + "\n" + "g\tf\t2012\t1\t3.0\tshort\n",
            "line 2: 6 fields, an STS-B line needs at least 7",
        ),
        (STSB_LINES[0] + "\n" + "g\tf\t2012\t1\tx\ta\tb\n", "line 2: score 'x' is not a number"),
        ("1.0\ta\t  \n", "line 1: a sentence is empty"),
        ("", "no sentence pairs"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(L2VError) as error:
        load_sts(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_unreadable_files_are_errors(tmp_path):
    with pytest.raises(L2VError, match="cannot read"):
        load_sts(tmp_path / "missing.tsv")
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"1.0\ta\tb\n2.0\t\xff\tc\n")
    with pytest.raises(L2VError, match="line 2: not UTF-8"):
        load_sts(binary)


def test_evaluate_sts_correlates_cosines_with_gold():
    encoder = tiny_encoder()
    pairs = [
        StsPair(5.0, "The cat sat on the mat.", "The cat sat on the mat."),
        StsPair(1.0, "The cat sat on the mat.", "Stock markets fell sharply."),
        StsPair(3.0, "A dog is running in the park.", "A dog runs in a park with a ball."),
        StsPair(0.5, "Proteins fold into structures.", "The quick brown fox jumps."),
    ]
    result = evaluate_sts(encoder, pairs)
    vectors = encoder.encode([s for p in pairs for s in (p.first, p.second)])
    cosines = [float(vectors[2 * i] @ vectors[2 * i + 1]) for i in range(len(pairs))]
    assert result.spearman == pytest.approx(spearman(cosines, [p.score for p in pairs]), abs=1e-4)
    assert np.isclose(cosines[0], 1.0, atol=1e-5)  # identical sentences
    assert (result.pairs, result.sentences) == (4, 6)  # a repeated sentence is embedded once


def test_cli_sts_reads_the_stsb_file_and_appends_its_result(tmp_path, tiny_model_dir):
    path = tmp_path / "sts-mini.csv"
    path.write_text("\n".join(STSB_LINES) + "\n")
    results = tmp_path / "eval.jsonl"
    command = ["eval", "sts", str(path), "--model", str(tiny_model_dir)]
    result = run_cli(*command, "--causal", "--json", "--output", str(results))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["task"], record["dataset"], record["pairs"], record["causal"]) == (
        "sts",
        "sts-mini",
        3,
        True,
    )
    assert -100 <= record["spearman"] <= 100
    assert json.loads(results.read_text()) == record


@pytest.mark.skipif(not (SHARED_DATA / "stsbenchmark").is_dir(), reason="shared STS-B data not present")
def test_the_real_stsb_test_file_parses_completely():
    pairs = load_sts(SHARED_DATA / "stsbenchmark" / "sts-test.csv")
    assert len(pairs) == 1379  # as the data README says, despite the lines with extra columns
    assert all(0 <= pair.score <= 5 for pair in pairs)
