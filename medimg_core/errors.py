"""medimg's errors: one hierarchy, every message written for the person using the tool.

Each message names the problem, the offending value where there is one, and the fix.
Pages show ``str(error)`` in one ``st.error``; the command line prints it on one line and exits
with status 2. Anything that is not a ``MedimgError`` is a bug.

::

    MedimgError
    ├── DataError (ValueError)            the user's data cannot be used as given
    │   ├── LimitError                    a file exceeds a configured size / row / column cap
    │   ├── SchemaError                   columns at predict/evaluate time do not match the model
    │   └── ImageError                    an image, DICOM file, ZIP or image folder cannot be used
    ├── ConfigError (ValueError)          an option or combination of options is invalid
    ├── ModelFileError                    a model directory is missing, tampered with or not medimg's
    ├── RegistryError                     the run registry cannot be read or written
    ├── PrivacyError                      an operation would expose identifying data
    ├── EncryptionError                   an encrypted file cannot be read or written with the key at hand
    ├── PermissionDenied                  the signed-in user's role or projects do not allow it
    ├── AuthenticationError               sign-in failed (wrong name or password, locked, disabled)
    ├── Cancelled                         the user stopped a long run (nothing half-written is kept)
    └── ClusterError                      the Dask cluster lost a step's work (workers gone)
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "Cancelled",
    "ClusterError",
    "ConfigError",
    "DataError",
    "EncryptionError",
    "ImageError",
    "LimitError",
    "MedimgError",
    "ModelFileError",
    "PermissionDenied",
    "PrivacyError",
    "RegistryError",
    "SchemaError",
]


class MedimgError(Exception):
    """Root of every error medimg raises on purpose; its message is meant for the user."""


class DataError(MedimgError, ValueError):
    """The user's data cannot be used as given."""


class LimitError(DataError):
    """A file exceeds a configured size, row or column cap."""


class SchemaError(DataError):
    """The columns of new data do not match what the model was trained on."""


class ImageError(DataError):
    """An image, DICOM file, ZIP archive or image folder cannot be used."""


class ConfigError(MedimgError, ValueError):
    """An option, or a combination of options, is invalid."""


class ModelFileError(MedimgError):
    """A model directory is missing, was tampered with, or was not written by medimg."""


class RegistryError(MedimgError):
    """The run registry cannot be read or written."""


class PrivacyError(MedimgError):
    """An operation would expose data that identifies a patient."""


class EncryptionError(MedimgError):
    """An encrypted file cannot be read or written: the key is missing, wrong or unsafe."""


class PermissionDenied(MedimgError):
    """The acting user's role or project memberships do not allow the action."""


class AuthenticationError(MedimgError):
    """Sign-in failed: wrong name or password, a locked or a disabled account."""


class Cancelled(MedimgError):
    """The user stopped a long run; nothing it would have written was kept."""


class ClusterError(MedimgError):
    """The Dask cluster lost a step's work (the workers holding it left, or a task kept
    killing its workers); nothing half-written is kept."""
