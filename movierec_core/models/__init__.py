"""Recommender models, the implicit-confidence rule and bundles (what the model server loads).

Every model implements :class:`Recommender` (``fit``, ``recommend``, ``fold_in``, ``save``,
``load``, ``scores_for_user``, ``scores_for_items``); see ``docs/trainer.md``.
"""

from movierec_core.models.base import Recommender, top_k, top_k_batch
from movierec_core.models.bundle import Bundle, load_bundle, read_manifest, save_bundle
from movierec_core.models.confidence import ConfidenceWeights, confidence
from movierec_core.models.factor import ALSModel, BPRModel, FactorModel
from movierec_core.models.neighbours import EASEModel, ItemKNNModel
from movierec_core.models.popularity import (
    ColdStartModel,
    PopularityModel,
    age_band,
    segment_chain,
    segment_of,
)
from movierec_core.models.registry_of_models import MODEL_TYPES, load_model, make_model

__all__ = [
    "ALSModel", "BPRModel", "Bundle", "ColdStartModel", "ConfidenceWeights", "EASEModel",
    "FactorModel", "ItemKNNModel", "MODEL_TYPES", "PopularityModel", "Recommender", "age_band",
    "confidence", "load_bundle", "load_model", "make_model", "read_manifest", "save_bundle",
    "segment_chain", "segment_of", "top_k", "top_k_batch",
]
