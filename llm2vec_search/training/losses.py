"""The two training objectives: masked next-token prediction (MNTP) and InfoNCE over in-batch negatives."""

import torch
import torch.nn.functional as F
from torch import nn

from .data import IGNORE_INDEX


def mntp_prediction_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, source positions, target ids): a masked token at position i is predicted from the output at
    position i-1, so that the model keeps using its LM head the way it was pre-trained (LLM2Vec's MNTP)."""
    rows, columns = (labels != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows, columns - 1, labels[rows, columns]


def mntp_loss(
    hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module, softcapping: float | None = None
) -> torch.Tensor:
    """Cross-entropy of the LM head's predictions for the masked tokens.

    The head runs only at the source positions (about 20% of tokens), not over the whole sequence: with a
    262k-token vocabulary, full-sequence logits would dominate memory. `softcapping` is the family's final
    logit soft-cap (Gemma 2), applied as its own LM head does.
    """
    rows, sources, targets = mntp_prediction_positions(labels)
    if rows.numel() == 0:  # nothing masked in this batch: a zero loss that still has a graph
        return hidden.sum() * 0.0
    logits = lm_head(hidden[rows, sources]).float()
    if softcapping:
        logits = torch.tanh(logits / softcapping) * softcapping
    return F.cross_entropy(logits, targets)


def info_nce(queries: torch.Tensor, candidates: torch.Tensor, temperature: float) -> torch.Tensor:
    """Contrastive loss: candidate i is query i's positive; every other candidate (the other queries'
    positives, then any hard negatives appended after them) is a negative. Cosine similarity / temperature."""
    if candidates.shape[0] < queries.shape[0]:
        raise ValueError("need at least one candidate per query")
    scores = F.normalize(queries.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T
    targets = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(scores / temperature, targets)
