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
    "Limits": "io",
    "LoadedTable": "io",
    "load_table": "io",
    "load_sample": "io",
    "read_data": "io",
    "Roles": "roles",
    "RoleProposal": "roles",
    "propose_roles": "roles",
    "propose_positive_class": "roles",
    "CleaningPlan": "cleaning",
    "CleaningReport": "cleaning",
    "clean": "cleaning",
    "suggest_plan": "cleaning",
    "join_tables": "integration",
    "stack_sources": "integration",
    "ModelConfig": "models",
    "MedimgModel": "models",
    "ValidationConfig": "training",
    "TrainingResult": "training",
    "train": "training",
    "evaluate_model": "training",
    "check_schema": "training",
    "predict": "training",
    "Evaluation": "evaluation",
    "evaluate_scores": "evaluation",
    "choose_threshold": "evaluation",
    "confusion_at": "evaluation",
    "Explanation": "explain",
    "ModelExplainer": "explain",
    "explain": "explain",
    "image_table": "imaging",
    "features_for_prediction": "imaging",
    "save_run": "runs",
    "save_model": "persistence",
    "load_model": "persistence",
    "Registry": "registry",
    "workspace_home": "registry",
}

__all__ = [
    "ConfigError",
    "DataError",
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
