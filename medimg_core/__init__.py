"""medimg: honest, explained diagnostic models from medical-imaging data."""

from __future__ import annotations

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
]
