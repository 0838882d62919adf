"""Shared fixtures: tiny randomly initialised models of every supported family, with a tokenizer trained here.

Nothing is downloaded: the tokenizer is a small BPE trained on a few sentences in-process, and each model is
built from its architecture's config with random weights (real code paths, tiny sizes).
"""

import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
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

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
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
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    from tokenizers import decoders

    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"))


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
