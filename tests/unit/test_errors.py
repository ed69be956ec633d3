"""Tests for medimg_core.errors: one documented tree of errors written for users."""

from __future__ import annotations

import inspect

from medimg_core import errors


def test_error_hierarchy_is_documented_and_user_facing() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert set(errors.__all__) == {c.__name__ for c in classes}
    for cls in classes:
        assert issubclass(cls, errors.MedimgError)
        assert cls.__doc__ and cls.__name__ in (errors.__doc__ or "")
    assert issubclass(errors.DataError, ValueError)
    assert issubclass(errors.SchemaError, errors.DataError)
