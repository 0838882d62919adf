"""Quality measurements: BEIR retrieval through the real `Index`, and STS similarity through the `Encoder`.

`retrieval` loads the whole indexing stack, so it is imported on its own (`from .retrieval import ...`).
"""

from .beir import BeirDataset, load_beir
from .metrics import METRICS, mean_metrics, per_query_metrics
from .report import append_result, load_results
from .sts import StsPair, StsResult, evaluate_sts, load_sts, spearman

__all__ = [
    "METRICS",
    "BeirDataset",
    "StsPair",
    "StsResult",
    "append_result",
    "evaluate_sts",
    "load_beir",
    "load_results",
    "load_sts",
    "mean_metrics",
    "per_query_metrics",
    "spearman",
]
