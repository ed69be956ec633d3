"""Property tests of what users type as class names (``--class-names``, the Data page)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medimg_core.errors import ConfigError
from medimg_core.tables.roles import parse_class_names

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
