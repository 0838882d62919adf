"""LLM2Vec training: MNTP, then unsupervised SimCSE, optionally supervised contrastive training.

Each stage trains a LoRA adapter on top of the model with the earlier adapters merged, and lists it in the
output directory's `l2v-model.json`, which `Encoder.from_pretrained(directory)` loads.
"""

from .contrastive import ContrastiveSettings, contrastive_backward
from .data import Pair, PairSource, read_pairs, read_sources, read_texts
from .loop import plot_losses
from .mntp import MNTPSettings, MNTPStage, train_mntp
from .settings import TrainSettings
from .setup import StartingPoint
from .simcse import SimCSESettings, SimCSEStage, train_simcse
from .supervised import DEFAULT_QUERY_INSTRUCTION, SupervisedSettings, SupervisedStage, train_supervised

__all__ = [
    "DEFAULT_QUERY_INSTRUCTION",
    "ContrastiveSettings",
    "MNTPSettings",
    "MNTPStage",
    "Pair",
    "PairSource",
    "SimCSESettings",
    "SimCSEStage",
    "StartingPoint",
    "SupervisedSettings",
    "SupervisedStage",
    "TrainSettings",
    "contrastive_backward",
    "plot_losses",
    "read_pairs",
    "read_sources",
    "read_texts",
    "train_mntp",
    "train_simcse",
    "train_supervised",
]
