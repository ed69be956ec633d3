"""Tests for medimg_core._messages: wording shared by messages, tables and figures."""

from __future__ import annotations

import numpy as np

from medimg_core._messages import column_hint, format_value, quote_list


def test_format_value() -> None:
    assert format_value(1203.4) == "1,203"
    assert format_value(12.345) == "12.35"
    assert format_value(0.07812) == "0.0781"
    assert format_value(float("nan")) == "missing"
    assert format_value(None) == "missing"
    assert format_value("spiculated") == "spiculated"
    assert format_value(np.int64(1203)) == "1,203"
    assert format_value(True) == "True"


def test_column_hint_suggests_close_matches_or_lists_columns() -> None:
    assert column_hint("agee", ["Age", "sex"]) == "Close matches: 'Age'. "
    assert column_hint("zzz", ["a", "b"]) == "Available columns: 'a', 'b'. "
    assert quote_list(["a", "b", "c"], limit=2) == "'a', 'b', ..."
