"""Shared fixtures and helpers: tiny randomly initialised models of every supported family, with a tokenizer
trained here; the CLI run as a user runs it (a subprocess, also on a pseudo-terminal); small corpora and the
indexes built from them; a served HTTP backend.

Nothing is downloaded: the tokenizer is a small BPE trained on a few sentences in-process, and each model is
built from its architecture's config with random weights (real code paths, tiny sizes).
"""

import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from llm2vec_search.encoder import Encoder, set_bidirectional
from llm2vec_search.indexing import Index

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TRAINING_TEXT = [
    "The cat sat on the mat and looked at the dog.",
    "A dog is running in the park with a ball.",
    "Stock markets fell sharply after the announcement.",
    "Proteins fold into three dimensional structures.",
    "The quick brown fox jumps over the lazy dog.",
    "Vector search finds similar documents by meaning.",
    "Bidirectional attention lets every token see the whole text.",
] * 20


def build_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE with <pad>=0, <eos>=1, <bos>=2, <unk>=3, <mask>=4 that prepends <bos>, like Gemma."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    from tokenizers import decoders

    tokenizer.decoder = decoders.ByteLevel()
    return _with_bos(tokenizer)


def _with_bos(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """`tokenizer` prepending <bos>, wrapped as transformers' fast tokenizer with the special tokens."""
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def build_gemma_style_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A BPE shaped like Gemma's (spaces replaced by ▁, no pre-tokenizer, byte fallback: the 256 <0xNN>
    tokens after the learned ones), with the same special tokens as `build_tokenizer`, an added token
    `<custom>`, and <bos> prepended."""
    import json

    from tokenizers import decoders, normalizers

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    spec["model"]["byte_fallback"] = True
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokenizer.add_tokens(["<custom>"])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback()])
    return _with_bos(tokenizer)


def tiny_config(family: str, vocab_size: int):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    if family == "llama":
        return LlamaConfig(**common)
    if family == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "qwen3":
        return Qwen3Config(**common, head_dim=8)
    if family == "gemma":
        return GemmaConfig(**common, head_dim=8)
    if family == "gemma2":
        return Gemma2Config(**common, head_dim=8, sliding_window=8)
    if family == "gemma3_text":
        return Gemma3TextConfig(
            **common, head_dim=8, sliding_window=8, layer_types=["sliding_attention", "full_attention"]
        )
    raise ValueError(family)


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"]


def tiny_model(family: str = "gemma3_text", seed: int = 0):
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(family, len(tokenizer))).eval()
    return model, tokenizer


def tiny_encoder(
    family: str = "gemma3_text", pooling: str = "mean", bidirectional: bool = True, **kwargs
) -> Encoder:
    model, tokenizer = tiny_model(family)
    set_bidirectional(model, bidirectional)
    return Encoder(
        model, tokenizer, pooling=pooling, name=f"tiny-{family}", fingerprint=f"tiny-{family}", **kwargs
    )


def save_tiny_model(directory: Path, family: str = "gemma3_text") -> Path:
    """Write a tiny model as a Hugging Face directory that `Encoder.from_pretrained` accepts."""
    model, tokenizer = tiny_model(family)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def save_tiny_adapter(base_dir: Path, out_dir: Path, seed: int, merge_first=None):
    """Save a random (non-zero) LoRA adapter for the tiny model as training would; return the model (or
    `merge_first`, a model with earlier adapters merged) with it merged."""
    from peft import LoraConfig, get_peft_model

    from llm2vec_search.encoder.adapters import peft_deprecations_silenced

    model = tiny_model()[0] if merge_first is None else merge_first
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
    with peft_deprecations_silenced():
        peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out_dir)
    return peft_model.merge_and_unload()


def save_tiny_causal_lm(directory: Path, family: str = "gemma3_text") -> Path:
    """A tiny random causal LM (with its LM head) and the tiny tokenizer, as a Hugging Face directory."""
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer))).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture
def one_thread():
    """Tiny models run far faster on one thread than on threads fighting for a busy CPU (training tests
    use it for every test: `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def encoder() -> Encoder:
    return tiny_encoder()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Tests never write into the user's model cache unless they use the real default model."""
    if "L2V_TEST_REAL_CACHE" not in os.environ:
        monkeypatch.setenv("L2V_SEARCH_CACHE_DIR", str(tmp_path / "model-cache"))


def real_model_cache() -> Path:
    """The cache for tests that use the real default model: shared across runs so it converts only once."""
    return Path(os.environ.get("L2V_TEST_MODEL_CACHE", Path.home() / ".cache" / "l2v-search"))


def real_model_env() -> dict[str, str]:
    """`cli_env()` for a CLI run of the real default model: its shared cache, and torch's own thread count."""
    env = cli_env(L2V_SEARCH_CACHE_DIR=str(real_model_cache()))
    del env["OMP_NUM_THREADS"]
    return env


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """Write a tiny random Llama model with the tiny BPE tokenizer as a real GGUF file (fp32 tensors)."""
    import json

    import gguf
    import numpy as np

    tokenizer = build_tokenizer()
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens = sorted(state["model"]["vocab"], key=state["model"]["vocab"].get)
    hidden, inner, layers, heads, kv_heads = 32, 64, 2, 4, 2
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(inner)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t.startswith("<") and t.endswith(">") else 1 for t in tokens])
    writer.add_token_merges([" ".join(merge) for merge in state["model"]["merges"]])
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    rng = np.random.default_rng(seed)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    kv = hidden // heads * kv_heads
    tensor("token_embd.weight", len(tokens), hidden)
    for block in range(layers):
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{block}.ffn_norm.weight", np.ones(hidden, np.float32))
        for name, shape in [
            ("attn_q", (hidden, hidden)),
            ("attn_k", (kv, hidden)),
            ("attn_v", (kv, hidden)),
            ("attn_output", (hidden, hidden)),
            ("ffn_gate", (inner, hidden)),
            ("ffn_up", (inner, hidden)),
            ("ffn_down", (hidden, inner)),
        ]:
            tensor(f"blk.{block}.{name}.weight", *shape)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    tensor("output.weight", len(tokens), hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --- the CLI as a user runs it ---
# The user's own settings, which would point a test's CLI run at their indexes or their server key.
USER_SETTINGS = ("L2V_SEARCH_INDEX_DIR", "L2V_SEARCH_API_KEY")


def cli_command(*args: str) -> list[str]:
    """`l2v-search ARGS` run by this interpreter, so by this checkout's package whatever is on PATH."""
    return [sys.executable, "-m", "llm2vec_search", *args]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment less the user's own settings, with one torch thread (tiny models run faster so on
    a busy CPU), and `extra` on top."""
    env = {name: value for name, value in os.environ.items() if name not in USER_SETTINGS}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 180,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """`l2v-search ARGS` in a subprocess in `cwd` (indexes go to its ./indexes), output captured; `env`
    (default `cli_env()`) is its whole environment; `preexec_fn` runs in the child first (to set limits)."""
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=cli_env() if env is None else env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def assert_user_error(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2 with one line on stderr that holds `message`, and no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _take_terminal() -> None:
    """In the child, after setsid: make its stdin (the pty) the controlling terminal, and let Ctrl-C through.

    A shell starts a foreground program with SIGINT at its default, but a test run started in the
    background (`pytest &`, `nohup`) ignores SIGINT, and an ignored signal stays ignored across exec:
    Ctrl-C would then do nothing in the child, as it does for any program started that way.
    """
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """A child process on a real pseudo-terminal (so Rich and readline see a tty), read with timeouts."""

    def __init__(self, args: list[str], cwd: Path, columns: int = 160) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        env = {k: v for k, v in cli_env().items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_take_terminal,  # so Ctrl-C sent to the tty interrupts the child
        )
        os.close(slave)
        self.output = ""

    def read_until(self, pattern: str, timeout: float = 120) -> str:
        """Read until `pattern` (a regex) appears in the output seen so far, or the child closes the tty."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output so far:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child has closed the terminal
                break
            if not data:
                break
            self.output += data.decode("utf-8", "replace")
        return self.text

    @property
    def text(self) -> str:
        """The output without colour codes and carriage returns."""
        return ANSI.sub("", self.output).replace("\r", "")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def interrupt(self, timeout: float = 60) -> None:
        """Ctrl-C, once the child is asleep in select() waiting for a key.

        Python's readline looks for signals only when select() is interrupted: a SIGINT that lands after the
        prompt is drawn but before select() starts is acted on at the next key, so a Ctrl-C sent the moment
        the prompt shows is lost now and then on a busy CPU.
        """
        deadline = time.monotonic() + timeout
        wchan = Path(f"/proc/{self.process.pid}/wchan")
        while "poll" not in wchan.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.send("\x03")

    def finish(self, timeout: float = 60) -> int:
        self.read_until(r"(?!x)x", timeout)  # everything until the child closes the terminal
        code = self.process.wait(timeout=timeout)
        os.close(self.master)
        return code


# --- small corpora and the indexes built from them ---
def write_files(folder: Path, files: dict[str, str]) -> Path:
    """Each relative path of `files` under `folder` with its text; returns `folder`."""
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


# Documents for searching from the CLI: headings, plain text and code.
DOCS = {
    "guide.md": (
        "# Guide\n\nThis guide explains the tool.\n\n"
        "## Install\n\nRun pip install to install the package.\n\n"
        "## Search\n\nVector search finds similar documents by meaning.\n"
    ),
    "notes.txt": "The dog runs in the park with a ball.\nStock markets fell sharply after the news.\n",
    "code/fetch.py": 'def fetch_ball():\n    """Fetch the ball for the dog."""\n    return "ball"\n',
}
CORPUS = {
    "readme.md": "# Project\n\nThis project indexes folders for search.\n\n## Install\n\nUse pip.\n",
    "notes/todo.txt": "Remember to water the plants on Monday.\n",
    "src/main.py": "def main():\n    print('hello world')\n",
}


def build_corpus_index(folder: Path, model_dir: Path) -> Path:
    """CORPUS under folder/corpus, indexed in-process into the `default` index that `run_cli(cwd=folder)`
    sees (for tests about what comes after: a subprocess would cost one more model load)."""
    from llm2vec_search.indexing import Index

    with Index.open(folder / "indexes" / "default", model=str(model_dir), create=True) as index:
        index.update([write_files(folder / "corpus", CORPUS)])
    return folder


def cli_status(workdir: Path, name: str = "default") -> dict:
    """`l2v-search status --json` of an index under workdir/indexes."""
    import json

    result = run_cli("status", "--name", name, "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


NOTE_WORDS = [
    "river",
    "stone",
    "cloud",
    "maple",
    "copper",
    "lantern",
    "harbor",
    "meadow",
    "violet",
    "thunder",
    "orchard",
    "quartz",
]


def write_numbered_notes(root: Path, files: int) -> Path:
    """`files` short notes in ten folders, each with its own mix of NOTE_WORDS (for many-chunk indexes)."""
    for i in range(files):
        words = [NOTE_WORDS[(i * 7 + j) % len(NOTE_WORDS)] for j in range(24)]
        text = f"Note {i}.\n\n{' '.join(words)}.\n\nThe {NOTE_WORDS[i % len(NOTE_WORDS)]} count is {i}.\n"
        write_files(root, {f"group{i % 10}/note{i:03d}.txt": text})
    return root


def snapshot(index: Index) -> dict:
    """Everything that must match a clean build: files, chunk texts, and the three stores' counts."""
    conn = index.store.conn
    chunks = conn.execute("SELECT path, ordinal, text FROM chunks WHERE committed = 1").fetchall()
    files = conn.execute("SELECT path, sha256 FROM files WHERE sha256 IS NOT NULL").fetchall()
    return {
        "files": sorted(files),
        "chunks": sorted(chunks),
        "fts": index.store.fts_count(),
        "faiss": sorted(index.vectors.ids().tolist()),
        "committed_ids": sorted(index.store.committed_chunk_ids()),
    }


# --- a served backend: `l2v-search serve` over two indexes, on 127.0.0.1 ---
SERVER_KEY_VAR = "L2V_TEST_SERVER_KEY"
SERVER_KEY = "test-key-5f1c0a9e"
SERVED_NOTES = {
    "cats.md": "# Cats\n\nThe cat sat on the mat and looked at the dog.\n",
    "markets.md": "# Markets\n\nStock markets fell sharply after the announcement.\n",
    "proteins.md": "# Proteins\n\nProteins fold into three dimensional structures.\n",
}
SERVED_EXTRA = {"search.txt": "Vector search finds similar documents by meaning.\n"}


@dataclass
class Served:
    url: str
    port: int
    env: dict
    index_dir: Path
    model_dir: Path
    extra_dir: Path
    headers: dict
    log: Path


def start_serve(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`l2v-search serve ARGS` (ARGS include `--port`) in the background, its stderr in `log`; returns once
    its /health answers (a model load: minutes on a busy machine)."""
    port = args[args.index("--port") + 1]
    with log.open("w") as log_file:
        server = subprocess.Popen(cli_command("serve", *args), env=env, stderr=log_file, cwd=ROOT)
    deadline = time.monotonic() + 600
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real `l2v-search serve` process with an API key over `notes` (indexed by the CLI) and `extra`."""
    from llm2vec_search.indexing import Index

    tmp = tmp_path_factory.mktemp("serve")
    env = cli_env(L2V_SEARCH_CACHE_DIR=str(tmp / "cache"), **{SERVER_KEY_VAR: SERVER_KEY})
    model_dir = save_tiny_model(tmp / "model")
    index_dir = tmp / "indexes"
    extra_dir = write_files(tmp / "extra", SERVED_EXTRA)
    notes = write_files(tmp / "notes", SERVED_NOTES)
    args = ["index", str(notes), "--name", "notes", "--index-dir", str(index_dir), "--model", str(model_dir)]
    done = run_cli(*args, env=env, cwd=ROOT, timeout=600)  # a model load: minutes on a busy machine
    assert done.returncode == 0, done.stderr
    with Index.open("extra", root=index_dir, model=str(model_dir), create=True) as extra:  # faster in-process
        extra.update([extra_dir])
    port = free_port()
    args = ["--name", "notes", "--name", "extra", "--api-key", SERVER_KEY_VAR]
    args += ["--batch-wait-ms", "50", "--threads", "1"]
    log = tmp / "server.log"
    server = start_serve([*args, "--index-dir", str(index_dir), "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    yield Served(url, port, env, index_dir, model_dir, extra_dir, headers, log)
    server.terminate()
    server.wait(timeout=30)
