"""torchmetrics Metric subclasses that score anonymizers (see docs/protocols.md)."""

from deid_eval.metrics.detection import DetectionRate
from deid_eval.metrics.fid import FID, KID, frechet_distance
from deid_eval.metrics.knn import chunked_topk
from deid_eval.metrics.lfw import LFWVerification, lfw_verification
from deid_eval.metrics.reid import ReIdRecall
from deid_eval.metrics.silhouette import SilhouetteKNNReId

__all__ = [
    "FID",
    "KID",
    "DetectionRate",
    "LFWVerification",
    "ReIdRecall",
    "SilhouetteKNNReId",
    "chunked_topk",
    "frechet_distance",
    "lfw_verification",
]
