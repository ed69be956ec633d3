"""medimg: honest, explained diagnostic models from medical-imaging data.

The public surface is re-exported here and imported lazily (PEP 562), so that
``import medimg_core`` (for example to read an error type) does not load scikit-learn or shap.

>>> from medimg_core import load_sample, propose_roles, clean, train
>>> table = load_sample("wdbc")
>>> roles = propose_roles(table.frame).to_roles()
>>> result = train(clean(table.frame, roles).data, roles)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from medimg_core.errors import (
    ConfigError,
    DataError,
    EncryptionError,
    ImageError,
    LimitError,
    MedimgError,
    ModelFileError,
    PrivacyError,
    RegistryError,
    SchemaError,
)

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Limits": "tables.loading",
    "LoadedTable": "tables.loading",
    "load_table": "tables.loading",
    "load_sample": "tables.loading",
    "read_data": "tables.loading",
    "Roles": "tables.roles",
    "RoleProposal": "tables.roles",
    "propose_roles": "tables.roles",
    "propose_positive_class": "tables.roles",
    "CleaningPlan": "tables.cleaning",
    "CleaningReport": "tables.cleaning",
    "clean": "tables.cleaning",
    "suggest_plan": "tables.cleaning",
    "join_tables": "tables.integration",
    "stack_sources": "tables.integration",
    "ModelConfig": "modelling.models",
    "MedimgModel": "modelling.models",
    "ValidationConfig": "modelling.validation",
    "TrainingResult": "modelling.training",
    "train": "modelling.training",
    "evaluate_model": "modelling.prediction",
    "check_schema": "modelling.schema",
    "predict": "modelling.prediction",
    "Evaluation": "modelling.evaluation",
    "evaluate_scores": "modelling.evaluation",
    "choose_threshold": "modelling.evaluation",
    "confusion_at": "modelling.evaluation",
    "Explanation": "modelling.explain",
    "ModelExplainer": "modelling.explain",
    "explain": "modelling.explain",
    "image_table": "imaging.feature_table",
    "features_for_prediction": "imaging.feature_table",
    "save_run": "store.runs",
    "save_model": "store.persistence",
    "load_model": "store.persistence",
    "Registry": "store.registry",
    "workspace_home": "workspace",
}

__all__ = [
    "ConfigError",
    "DataError",
    "EncryptionError",
    "ImageError",
    "LimitError",
    "MedimgError",
    "ModelFileError",
    "PrivacyError",
    "RegistryError",
    "SchemaError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medimg_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"medimg_core.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
