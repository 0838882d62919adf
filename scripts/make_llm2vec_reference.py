"""Build tiny random LLM2Vec models laid out like the published ones, and the official library's vectors.

Run ONCE, in a throwaway environment outside the repository (the official library pins old transformers):

    python3 -m venv /tmp/llm2vec-env
    /tmp/llm2vec-env/bin/pip install llm2vec==0.2.3 transformers==4.44.2 peft==0.12.0 torch==2.13.0
    /tmp/llm2vec-env/bin/python scripts/make_llm2vec_reference.py tests/data/llm2vec

It writes `OUT/hub/`, a Hugging Face hub cache (`models--ORG--NAME/refs/main` → `snapshots/<hash>/`) holding,
for three base styles, a tiny base under the real base's name, an MNTP folder (config.json, tokenizer and a
LoRA adapter, no weights, as McGill-NLP publishes them) and an adapter-only supervised folder on top; and
`OUT/reference.json`, the vectors `llm2vec.LLM2Vec` gives for documents and for queries with an instruction.
tests/test_published.py checks that l2v-search gives the same vectors.
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

TRAINING_TEXT = [
    "The cat sat on the mat and looked at the dog.",
    "A dog is running in the park with a ball.",
    "Stock markets fell sharply after the announcement.",
    "Proteins fold into three dimensional structures.",
    "Given a web search query, retrieve relevant passages that answer the query",
    "Retrieve the document that answers the question: where do cats sleep?",
    "[INST] what is vector search? [/INST]",
    "user\n\nWhich animals run in the park?",
] * 20
# as llm2vec trained on MS MARCO (its dataset/E5Data.py: f"{instruction}; " + separator + query)
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query;"
DOCUMENTS = [
    "The cat sat on the mat.",
    "  A dog is running in the park with a ball.  ",
    "Stock markets fell sharply after the announcement, and proteins fold into three dimensional "
    "structures while the quick dog runs in the park and the cat looks at the mat again and again.",
]
QUERIES = ["where do cats sleep?", "which animals run in the park", "markets"]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name, architecture, tokenizer style, base hub name, MNTP hub name, the supervised folder's llm2vec_config
STYLES = [
    (
        "sheared-llama",
        "llama",
        "sentencepiece",
        "princeton-nlp/Sheared-LLaMA-1.3B",
        "McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp",
        {"pooling_mode": "mean", "max_length": 512, "doc_max_length": 16, "skip_instruction": True},
    ),
    (
        "llama-3-instruct",
        "llama",
        "llama3",
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp",
        None,
    ),
    (
        "mistral-instruct",
        "mistral",
        "sentencepiece",
        "mistralai/Mistral-7B-Instruct-v0.2",
        "McGill-NLP/LLM2Vec-Mistral-7B-Instruct-v2-mntp",
        None,
    ),
]


def build_tokenizer(style: str):
    """A tiny BPE: sentencepiece-like (▁ word marks, <s> first) or Llama-3-like (byte level, chat tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if style == "llama3":
        specials = [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ]
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        bos, eos = "<|begin_of_text|>", "<|eot_id|>"
        names = {"bos_token": bos, "eos_token": eos}
    else:
        specials = ["<unk>", "<s>", "</s>"]
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = []
        bos, eos = "<s>", "</s>"
        names = {"bos_token": bos, "eos_token": eos, "unk_token": "<unk>"}
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, show_progress=False, initial_alphabet=alphabet
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_input_names=["input_ids", "attention_mask"], **names
    )


def snapshot(hub: Path, name: str) -> Path:
    """A fresh `snapshots/<hash>` folder for hub `name`, with `refs/main` pointing at it."""
    repo = hub / ("models--" + name.replace("/", "--"))
    revision = hashlib.sha1(name.encode()).hexdigest()
    shutil.rmtree(repo, ignore_errors=True)
    folder = repo / "snapshots" / revision
    folder.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return folder


def save_adapter(model, folder: Path, base_name: str, seed: int):
    """Save a random (non-zero) LoRA adapter for `model` naming `base_name` as its base; return it merged."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's model card template: noise here
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base_name
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    return peft_model.merge_and_unload()


def build_style(
    hub: Path, index: int, arch: str, tokenizer_style: str, base_name: str, mntp_name: str, settings
):
    import torch
    from transformers import AutoModel, LlamaConfig, MistralConfig

    tokenizer = build_tokenizer(tokenizer_style)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = MistralConfig(**common, sliding_window=None) if arch == "mistral" else LlamaConfig(**common)
    torch.manual_seed(100 + index)
    model = AutoModel.from_config(config).eval()
    base = snapshot(hub, base_name)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)

    mntp = snapshot(hub, mntp_name)
    merged = save_adapter(model, mntp, base_name, seed=200 + index)
    merged.config._name_or_path = base_name
    merged.config.save_pretrained(mntp)  # config.json with the base's name, and no weights: as published
    tokenizer.save_pretrained(mntp)

    supervised = snapshot(hub, mntp_name + "-supervised")
    save_adapter(merged, supervised, mntp_name, seed=300 + index)
    if settings:
        (supervised / "llm2vec_config.json").write_text(json.dumps(settings, indent=2))
    return mntp, supervised


def reference_vectors(base: str, adapter: str | None) -> dict:
    """What the official library gives for `DOCUMENTS` and `QUERIES` (with `INSTRUCTION`)."""
    import torch
    from llm2vec import LLM2Vec

    model = LLM2Vec.from_pretrained(
        base, peft_model_name_or_path=adapter, merge_peft=True, torch_dtype=torch.float32
    )
    documents = model.encode(DOCUMENTS, batch_size=8, show_progress_bar=False, device="cpu")
    queries = model.encode(
        [[INSTRUCTION, q] for q in QUERIES], batch_size=8, show_progress_bar=False, device="cpu"
    )
    return {"documents": documents.tolist(), "queries": queries.tolist()}


def main(out: Path) -> None:
    hub = out / "hub"
    os.environ["HF_HUB_CACHE"] = str(hub.resolve())  # read when huggingface_hub is imported: set it first
    os.environ["HF_HUB_OFFLINE"] = "1"
    import llm2vec
    import peft
    import transformers

    reference = {
        "made_with": {
            "llm2vec": getattr(llm2vec, "__version__", "0.2.3"),
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "instruction": INSTRUCTION,
        "documents": DOCUMENTS,
        "queries": QUERIES,
        "models": {},
    }
    for index, (_, arch, tokenizer_style, base_name, mntp_name, settings) in enumerate(STYLES):
        mntp, supervised = build_style(hub, index, arch, tokenizer_style, base_name, mntp_name, settings)
        # By folder, not by name: peft 0.12 asks the network for an adapter named by hub name even offline
        # (llm2vec also reads llm2vec_config.json only from a folder).
        reference["models"][mntp_name + "-supervised"] = reference_vectors(str(mntp), str(supervised))
        reference["models"][mntp_name] = reference_vectors(str(mntp), None)
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
