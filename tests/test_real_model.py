"""End-to-end checks with the real default model (converted once into the user cache, ~1 min)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, real_model_cache, real_model_env, run_cli
from sentencepiece import SentencePieceProcessor

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
    assert default_encoder.dim == 384  # the distilled head's width (the teacher's), not the 640 hidden states


SAMPLE = Path(__file__).resolve().parents[1] / "sample_corpus"


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_index_and_query_sample_articles_from_the_cli(tmp_path_factory, mode):
    """The main job end to end with the default model: `index` three sample articles, then `query` them."""
    workdir = tmp_path_factory.getbasetemp() / "sample-e2e"
    env = real_model_env()
    if not (workdir / "indexes" / "default").exists():
        docs = workdir / "docs"
        docs.mkdir(parents=True)
        for name in ("malacidin.md", "seattle-kraken.md", "lid-tectonics.md"):
            shutil.copy(SAMPLE / name, docs / name)
        indexed = run_cli("index", "docs", cwd=workdir, env=env, timeout=900)
        assert indexed.returncode == 0, indexed.stderr
    query = ["query", "antibiotic made by soil bacteria", "--mode", mode, "-k", "3", "--json"]
    result = run_cli(*query, cwd=workdir, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["path"].endswith("malacidin.md")


PARAPHRASE_FOLDER = {
    "tides.md": "Ocean tides are caused mainly by the gravitational pull of the moon on the oceans.",
    "bread.txt": "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough.",
    "volcano.md": "Volcanoes erupt when magma from deep inside the earth forces its way up to the surface.",
    "chess.txt": "In chess, castling moves the king two squares towards a rook for safety.",
}


def test_default_mode_finds_a_paraphrase_that_shares_no_content_word(tmp_path):
    """The question shares no content word with tides.md (BM25's stemmed "rise" matches bread.txt), so
    only the dense half can rank it first: the default mode must."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in PARAPHRASE_FOLDER.items():
        (docs / name).write_text(text + "\n")
    env = real_model_env()
    assert run_cli("index", "docs", cwd=tmp_path, env=env, timeout=900).returncode == 0
    question = "why does the sea level rise and fall twice a day"
    result = run_cli("query", question, "--json", cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert Path(hits[0]["path"]).name == "tides.md"


def test_query_model_answers_without_torch(tmp_path_factory):
    """After `index` (above) built the query model, a search in a fresh process embeds its query with it, and
    never imports torch, wherever the build found it faster than PyTorch (else the full model answers)."""
    test_index_and_query_sample_articles_from_the_cli(tmp_path_factory, "dense")
    root = tmp_path_factory.getbasetemp() / "sample-e2e" / "indexes"
    code = (
        "import sys; from pathlib import Path; from llm2vec_search.indexing import Index\n"
        f"with Index.open('default', root=Path({str(root)!r})) as index:\n"
        "    hits = index.search('antibiotic made by soil bacteria')\n"
        "    print(type(index.query_encoder).__name__, 'torch' in sys.modules, Path(hits[0].path).name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=real_model_env(), check=True
    )
    kind, torch_imported, first = done.stdout.split()
    assert first == "malacidin.md"
    assert (kind, torch_imported) in {("QueryEncoder", "False"), ("Encoder", "True")}


def test_sentencepiece_tokenizer_matches_the_default_on_real_text():
    """The SentencePiece form of Gemma 3's tokenizer gives its ids on every SciFact and squad_dev query, 2,000
    Wikipedia sentences and the sample corpus (texts that spell out `<unk>` go to `tokenizers` by design)."""
    from tokenizers import Tokenizer

    from llm2vec_search.encoder.models import DEFAULT_BASE, resolve_weights
    from llm2vec_search.encoder.spm_tokenizer import spm_model

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("L2V_SEARCH_CACHE_DIR", str(real_model_cache()))
        weights, _ = resolve_weights(DEFAULT_BASE)
    original = Tokenizer.from_file(str(weights / "tokenizer.json"))
    model, unmatched = spm_model(original.to_str())
    processor = SentencePieceProcessor(model_proto=model)
    texts = [
        json.loads(line)["text"]
        for name in ("scifact", "squad_dev")
        for line in (SHARED_DATA / name / "queries.jsonl").open()
    ]
    texts += (SHARED_DATA / "wiki_en" / "sentences.txt").read_text().splitlines()[:2000]
    texts += [path.read_text() for path in sorted(SAMPLE.glob("*.md"))]
    assert unmatched == ["<unk>"]
    expected = [encoding.ids for encoding in original.encode_batch(texts, add_special_tokens=False)]
    assert processor.encode(texts) == expected
