"""Property-based tests: whatever bytes arrive, the loader answers with a table or a MedimgError."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg_core.errors import MedimgError
from medimg_core.privacy import FORMULA_PREFIXES, csv_safe
from medimg_core.tables.loading import MISSING_TOKENS, Limits, load_table

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = st.sampled_from(["t.csv", "t.tsv", "t.txt", "t.xlsx", "t.parquet", None, "t.json"])
DELIMITERS = st.sampled_from([",", ";", "\t", "|"])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"])
TOKENS = st.sampled_from(sorted(MISSING_TOKENS))
CELL_TEXT = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\x00"), max_size=12)
CELL = st.one_of(
    CELL_TEXT,
    TOKENS,
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(['"', '""', "a,b", "a;b", "\n", "\r\n", " ", "=1+1", "-", "007", "1,5"]),
)


def load_or_medimg_error(raw: bytes, name: str | None) -> pd.DataFrame | None:
    try:
        return load_table(raw, name=name, limits=Limits(max_rows=500, max_columns=50)).frame
    except MedimgError:
        return None


@SETTINGS
@given(raw=st.binary(max_size=400), name=NAMES)
def test_arbitrary_bytes_raise_only_medimg_errors(raw: bytes, name: str | None) -> None:
    load_or_medimg_error(raw, name)


@SETTINGS
@given(
    prefix=st.sampled_from([b"PK\x03\x04", b"PAR1", b"\xef\xbb\xbf", b"\xff\xfe", b"a,b\n"]),
    rest=st.binary(max_size=300),
    name=NAMES,
)
def test_bytes_with_misleading_signatures_raise_only_medimg_errors(
    prefix: bytes, rest: bytes, name: str | None
) -> None:
    load_or_medimg_error(prefix + rest, name)


@SETTINGS
@given(
    header=st.lists(CELL, min_size=1, max_size=6),
    rows=st.lists(st.lists(CELL, min_size=0, max_size=7), max_size=12),
    delimiter=DELIMITERS,
    encoding=ENCODINGS,
    quote=st.booleans(),
)
def test_messy_delimited_text_raises_only_medimg_errors(
    header: list[str],
    rows: list[list[str]],
    delimiter: str,
    encoding: str,
    quote: bool,
) -> None:
    def line(cells: list[str]) -> str:
        if quote:
            cells = ['"' + c.replace('"', '""') + '"' for c in cells]
        return delimiter.join(cells)

    text = "\n".join(line(r) for r in [header, *rows]) + "\n"
    load_or_medimg_error(text.encode(encoding), "t.csv")


@SETTINGS
@given(
    data=st.data(),
    n_columns=st.integers(1, 5),
    n_rows=st.integers(1, 15),
    delimiter=DELIMITERS,
    encoding=ENCODINGS,
)
def test_numeric_tables_round_trip(
    data: st.DataObject, n_columns: int, n_rows: int, delimiter: str, encoding: str
) -> None:
    values = data.draw(
        st.lists(
            st.lists(
                st.one_of(
                    st.integers(-(10**9), 10**9),
                    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
                ),
                min_size=n_columns,
                max_size=n_columns,
            ),
            min_size=n_rows,
            max_size=n_rows,
        )
    )
    columns = [f"feature {i}" for i in range(n_columns)]
    frame = pd.DataFrame(values, columns=columns, dtype="float64")
    text = frame.to_csv(index=False, sep=delimiter, float_format="%.17g")
    loaded = load_table(text.encode(encoding), name="t.csv").frame
    assert list(loaded.columns) == columns
    assert len(loaded) == n_rows
    for column in columns:
        assert pd.api.types.is_numeric_dtype(loaded[column])
        np.testing.assert_allclose(
            loaded[column].to_numpy(dtype="float64"), frame[column].to_numpy(), rtol=1e-15
        )


@SETTINGS
@given(
    data=st.data(),
    n_rows=st.integers(2, 20),
    delimiter=DELIMITERS,
)
def test_missing_tokens_round_trip_as_nan(data: st.DataObject, n_rows: int, delimiter: str) -> None:
    numbers = data.draw(st.lists(st.integers(-1000, 1000), min_size=n_rows, max_size=n_rows))
    gaps = data.draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
    tokens = data.draw(st.lists(TOKENS, min_size=n_rows, max_size=n_rows))
    cells = [f" {t} " if gap else str(n) for n, gap, t in zip(numbers, gaps, tokens, strict=True)]
    lines = ["row" + delimiter + "value"] + [f"r{i}{delimiter}{c}" for i, c in enumerate(cells)]
    loaded = load_table(("\n".join(lines) + "\n").encode(), name="t.csv").frame
    assert loaded["row"].tolist() == [f"r{i}" for i in range(n_rows)]
    for got, number, gap in zip(loaded["value"].tolist(), numbers, gaps, strict=True):
        if gap:
            assert got is None or (isinstance(got, float) and math.isnan(got))
        else:
            assert float(got) == number


@SETTINGS
@given(
    cells=st.lists(
        st.one_of(
            st.text(max_size=8),
            st.sampled_from(["=SUM(A1)", "+1", "-2", "@cmd", "\tx", "\rx", "'=x"]),
            st.floats(allow_nan=False),
            st.none(),
        ),
        min_size=1,
        max_size=20,
    ),
    as_string_dtype=st.booleans(),
)
def test_csv_safe_never_leaves_a_formula_at_the_start_of_a_text_cell(
    cells: list[object], as_string_dtype: bool
) -> None:
    texts = [c for c in cells if isinstance(c, str) or c is None]
    frame = pd.DataFrame({"mixed": pd.Series(cells, dtype=object)})
    if texts:
        frame = pd.concat(
            [frame, pd.Series(texts, dtype="str" if as_string_dtype else object, name="text")],
            axis=1,
        )
    safe = csv_safe(frame)
    for column in safe.columns:
        for before, after in zip(frame[column].tolist(), safe[column].tolist(), strict=True):
            if isinstance(after, str):
                assert not after.startswith(FORMULA_PREFIXES)
                assert after in (before, "'" + str(before))
            elif isinstance(before, float) and not math.isnan(before):
                assert after == before
