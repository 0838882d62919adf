"""A SentencePiece model equal to a Gemma-style BPE tokenizer, for the query path (`onnx_query`).

`tokenizers` takes 1.5-2 s to read Gemma 3's tokenizer.json (262,144 tokens, 514,906 merges) on these CPUs,
longer than everything else a one-shot query does; SentencePiece reads the same vocabulary as a protobuf in
under 0.1 s. Gemma's tokenizer.json is a SentencePiece BPE model converted: every piece a merge produces is
ranked by its merge, and SentencePiece merges by score, so each piece's score is minus its first merge's rank.
Added tokens become user-defined pieces, which SentencePiece matches in the text before merging, as
`tokenizers` matches added tokens. The unknown token cannot be one: a text that spells it out goes to
`tokenizers` (`unmatched`). Whether the result tokenizes exactly as the original is for the caller to check
(`onnx_export` does, on sample texts); tokenizers of another shape give None here.
"""

import json

SPACE = "▁"


def spm_model(tokenizer_json: str) -> tuple[bytes, list[str]] | None:
    """(serialized SentencePiece model, added tokens it cannot match) for a tokenizer.json of SentencePiece's
    shape (BPE with byte fallback, spaces replaced by ▁, no other normalization or splitting); else None."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    spec = json.loads(tokenizer_json)
    model = spec["model"]
    ids = {**model["vocab"], **{token["content"]: token["id"] for token in spec["added_tokens"]}}
    if not _spm_shaped(spec) or sorted(ids.values()) != list(range(len(ids))):
        return None
    pieces = sorted(ids, key=ids.__getitem__)
    rank: dict[str, int] = {}
    for position, merge in enumerate(model["merges"]):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        rank.setdefault(left + right, position)
    added = {token["id"] for token in spec["added_tokens"]}
    unknown = ids[model["unk_token"]]
    kinds = spm.ModelProto.SentencePiece
    proto = spm.ModelProto()
    for index, text in enumerate(pieces):
        piece = proto.pieces.add()
        piece.piece = text
        if index == unknown:
            piece.type = kinds.UNKNOWN
        elif index in added:
            piece.type = kinds.USER_DEFINED
        elif text.startswith("<0x") and text.endswith(">") and len(text) == 6:
            piece.type = kinds.BYTE
        else:
            piece.type = kinds.NORMAL
            piece.score = -float(rank.get(text, len(rank)))
    trainer = proto.trainer_spec
    trainer.model_type = spm.TrainerSpec.BPE
    trainer.vocab_size = len(pieces)
    trainer.byte_fallback = True
    trainer.unk_id = unknown
    trainer.bos_id = trainer.eos_id = trainer.pad_id = -1  # the caller adds special tokens by id
    trainer.split_by_whitespace = False
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = False
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    return proto.SerializeToString(), [model["unk_token"]]


def _spm_shaped(spec: dict) -> bool:
    model, normalizer, pre = spec["model"], spec.get("normalizer"), spec.get("pre_tokenizer")
    replaces_spaces = (
        normalizer is not None
        and normalizer.get("type") == "Replace"
        and normalizer.get("pattern") == {"String": " "}
        and normalizer.get("content") == SPACE
    )
    # Splitting on spaces after they became ▁ splits nothing.
    no_split = pre is None or (pre.get("type") == "Split" and pre.get("pattern") == {"String": " "})
    return (
        model.get("type") == "BPE"
        and model.get("byte_fallback") is True
        and model.get("unk_token") in model["vocab"]
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
        and replaces_spaces
        and no_split
    )
