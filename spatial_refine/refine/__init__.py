"""The generic REFINE core: any frozen source + any residual encoder + one linear head.

Modality-agnostic (no AnnData here). The pieces:

- :class:`FrozenSource` wraps a pretrained model as a frozen feature extractor ``f_rep``;
- :func:`build_strategy` builds REFINE or any baseline the paper compares (:data:`STRATEGIES`);
- :func:`fit` / :func:`predict_outputs` train and apply them with one loop (:class:`TrainConfig`);
- :func:`greedy_ensemble_weights` weights fitted models on validation data (ensemble selection);
- :class:`RefineClassifier` / :class:`RefineRegressor` wrap it all as scikit-learn estimators.
"""

from .ensemble import greedy_ensemble_weights
from .estimator import RefineClassifier, RefineRegressor
from .source import FrozenSource, extract_features
from .strategies import STRATEGIES, FeatureStandardizer, TransferModel, build_strategy
from .training import History, TensorBatches, TrainConfig, class_weights, fit, predict_outputs, seeded

__all__ = [
    "STRATEGIES",
    "FeatureStandardizer",
    "FrozenSource",
    "History",
    "RefineClassifier",
    "RefineRegressor",
    "TensorBatches",
    "TrainConfig",
    "TransferModel",
    "build_strategy",
    "class_weights",
    "extract_features",
    "fit",
    "greedy_ensemble_weights",
    "predict_outputs",
    "seeded",
]
