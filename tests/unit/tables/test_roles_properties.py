"""Property tests of what users type as class names (``--class-names``, the Data page)."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg_core.errors import ConfigError
from medimg_core.tables.roles import parse_class_names, propose_roles

_SEPARATORS = st.sampled_from(["=", " = ", ":", " -> ", "->"])
_JOINERS = st.sampled_from([",", ", ", ";", "\n", " ; "])
_CODES = st.one_of(
    st.integers(min_value=-5, max_value=999).map(str),
    st.text(alphabet="ABCMNPabcmnp", min_size=1, max_size=4),
)
_NAMES = st.text(
    alphabet=st.characters(
        whitelist_categories=("L", "N", "Zs"), blacklist_characters=",;:=\n\r\t-<>"
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip() != "")


@given(
    st.lists(st.tuples(_CODES, _NAMES), max_size=6, unique_by=(lambda p: p[0],)).filter(
        lambda pairs: len({n.strip().casefold() for _, n in pairs}) == len(pairs)
    ),
    _SEPARATORS,
    _JOINERS,
)
def test_written_names_read_back(pairs: list[tuple[str, str]], separator: str, joiner: str) -> None:
    text = joiner.join(f"{code}{separator}{name}" for code, name in pairs)
    assert parse_class_names(text) == tuple((code, name.strip()) for code, name in pairs)


@given(st.text(max_size=60))
def test_any_input_parses_or_is_refused_plainly(text: str) -> None:
    try:
        parsed = parse_class_names(text)
    except ConfigError as exc:
        assert "class names" in str(exc) or "code=name" in str(exc)
        return
    codes = [code for code, _ in parsed]
    assert len(codes) == len(set(codes))
    assert all(code and name and name == name.strip() for code, name in parsed)


_LOWER_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=10)
_CATEGORY_WORD = st.builds(
    lambda word, capital: word.capitalize() if capital else word, _LOWER_WORD, st.booleans()
)
_CATEGORY = st.lists(_CATEGORY_WORD, min_size=1, max_size=3).map(" ".join)


@st.composite
def _sentence(draw: st.DrawFn) -> str:
    # A long sentence: six words or more of three letters or more (at least 25 characters).
    words = draw(st.lists(_LOWER_WORD.filter(lambda w: len(w) >= 3), min_size=6, max_size=16))
    comma = draw(st.integers(min_value=1, max_value=len(words) - 2))
    text = " ".join(words[:comma]) + ", " + " ".join(words[comma:]) + "."
    return text[0].upper() + text[1:]


def _notes_column(values: list[str], counts: list[int]) -> pd.DataFrame:
    column = [v for v, n in zip(values, counts, strict=False) for _ in range(n)]
    labels = ["benign", "malignant"] * (len(column) // 2 + 1)
    return pd.DataFrame({"text_value": column, "outcome_code": labels[: len(column)]})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_CATEGORY, min_size=2, max_size=8, unique=True),
    st.lists(st.integers(min_value=1, max_value=30), min_size=8, max_size=8),
)
def test_short_category_values_are_never_free_text(values: list[str], counts: list[int]) -> None:
    proposal = propose_roles(_notes_column(values, counts))
    assert proposal.identifying.get("text_value") != "free text"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_sentence(), min_size=1, max_size=6, unique=True),
    st.lists(st.integers(min_value=1, max_value=30), min_size=6, max_size=6),
)
def test_long_multi_word_sentences_are_always_free_text(
    values: list[str], counts: list[int]
) -> None:
    proposal = propose_roles(_notes_column(values, counts))
    assert proposal.identifying.get("text_value") == "free text"
