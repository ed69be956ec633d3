"""Column roles: which column is the label, the patient ID, the quality flag, the site, and which
columns identify a person and must never become model features."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import DataError

__all__ = ["RoleProposal", "Roles", "feature_columns", "propose_positive_class", "propose_roles"]


@dataclass(frozen=True)
class Roles:
    """The roles the user confirmed. Every other column is a candidate feature.

    ``exclude`` holds identifying columns (names, dates of birth, phone numbers, addresses,
    free text) and anything else the user chose to leave out; they never reach a model.
    """

    label: str | None = None
    id: str | None = None
    quality: str | None = None
    site: str | None = None
    exclude: tuple[str, ...] = ()

    def non_feature_columns(self) -> tuple[str, ...]:
        """Columns that are never model features."""
        named = [c for c in (self.label, self.id, self.quality, self.site) if c]
        return tuple(dict.fromkeys([*named, *self.exclude]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "id": self.id,
            "quality": self.quality,
            "site": self.site,
            "exclude": list(self.exclude),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Roles:
        return cls(
            label=d.get("label"),
            id=d.get("id"),
            quality=d.get("quality"),
            site=d.get("site"),
            exclude=tuple(d.get("exclude") or ()),
        )


@dataclass(frozen=True)
class RoleProposal:
    """What medimg proposes, with reasons, for the user to confirm.

    ``identifying`` maps a column to the reason it looks identifying ("person names",
    "dates of birth", "phone numbers", "addresses", "free text", "name hint").
    """

    label_candidates: tuple[str, ...]
    id: str | None
    quality: str | None
    site: str | None
    identifying: dict[str, str] = field(default_factory=dict)
    positive_class: Any = None

    def to_roles(self) -> Roles:
        """The proposal taken as it stands (first label candidate)."""
        return Roles(
            label=self.label_candidates[0] if self.label_candidates else None,
            id=self.id,
            quality=self.quality,
            site=self.site,
            exclude=tuple(self.identifying),
        )


_LABEL_HINTS = (
    "diagnosis",
    "label",
    "target",
    "class",
    "outcome",
    "finding",
    "findings",
    "y",
)
_ID_TOKENS = frozenset({"id", "mrn", "accession", "identifier", "uid"})
_ID_NOUNS = frozenset({"patient", "case", "subject", "record", "study", "image", "lesion"})
_ID_SUFFIXES = frozenset({"number", "no", "nr", "num", "code", "key", "ref"})
_PATIENT_TOKENS = frozenset({"patient", "mrn", "subject", "pid"})
_QUALITY_TOKENS = frozenset({"quality", "qc", "qa", "usable"})
_SITE_TOKENS = frozenset(
    {"site", "source", "center", "centre", "hospital", "scanner", "institution", "vendor"}
)
_NAME_TOKENS = frozenset(
    {"name", "names", "surname", "forename", "firstname", "lastname", "fullname", "givenname"}
)
_NAME_PART_TOKENS = frozenset({"first", "last", "given", "family", "middle"})
_BIRTH_TOKENS = frozenset({"dob", "birthday", "birthdate", "born"})
_DATE_TOKENS = frozenset({"date", "dt", "time", "timestamp", "datetime"})
_PHONE_TOKENS = frozenset({"phone", "telephone", "tel", "mobile", "cellphone", "fax"})
_ADDRESS_TOKENS = frozenset(
    {"address", "addr", "street", "zip", "zipcode", "postcode", "postal", "city", "residence"}
)
_EMAIL_TOKENS = frozenset({"email", "mail", "e-mail"})
_TEXT_TOKENS = frozenset({"note", "notes", "comment", "comments", "remark", "remarks", "report"})
_OTHER_IDENTIFIER_TOKENS = frozenset(
    {"ssn", "nhs", "insurance", "passport", "licence", "license", "initials", "bsn"}
)
_MAX_CLASSES = 20
_MAX_SITES = 20
_PROBE = 500
_CONTINUOUS_HEAD = 10_000

_POSITIVE_WORDS = (
    "malignant",
    "malignancy",
    "positive",
    "pos",
    "abnormal",
    "pneumonia",
    "disease",
    "diseased",
    "cancer",
    "tumor",
    "tumour",
    "lesion",
    "present",
    "yes",
    "y",
    "true",
)
_NEGATIVE_WORDS = frozenset(
    {
        "benign",
        "negative",
        "neg",
        "normal",
        "healthy",
        "control",
        "absent",
        "no",
        "n",
        "false",
        "0",
        "none",
    }
)

_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
_PHONE = re.compile(r"^\+?[\d\s().\-/]{7,20}$")
_DATE = re.compile(
    r"^(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{8})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$"
)
_NAME_WORD = re.compile(r"^[A-Z][a-z'\-]+$")
_PERSON = re.compile(r"^[A-Z][a-z'\-]+(,? [A-Z][a-z'\-]*\.?){1,3}$")
_STREET = re.compile(
    r"^\d+[a-zA-Z]?,?\s+.*\b(street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|"
    r"court|ct|place|pl|square|sq|terrace|close|strasse|straße|weg|laan|straat|rue|via)\b",
    re.IGNORECASE,
)


def propose_roles(df: pd.DataFrame) -> RoleProposal:
    """Propose the label, patient ID, quality, site and identifying columns of a table.

    The rules are deliberately simple so a user can predict them:

    * **ID**: a column named like an identifier (``id``, ``patient_id``, ``MRN``, ``case``,
      ``subject``, ``accession`` ...). A patient-level name (patient, MRN, subject) wins over a
      case or image identifier, because splits must keep a patient's rows together; a
      patient-level column may repeat (several images per patient), any other ID must be
      near-unique (at least 90% distinct values). Other identifier-like columns are listed in
      ``identifying`` with the reason ``"identifier"`` so they never become features.
    * **Label candidates**: columns named like a label (diagnosis, label, target, class, outcome,
      finding, y), then other text or 0/1 columns, each with 2 to 20 distinct values; continuous
      numbers never qualify.
    * **Quality**: named quality / qc / qa / usable, with at most 20 distinct values.
    * **Site**: named site / source / centre / hospital / scanner / institution / vendor, with
      at most 20 distinct values.
    * **Identifying**: person names, dates of birth (and other dates), phone numbers, addresses,
      e-mails, free text and other personal identifiers, judged from the column name and a
      sample of the values.

    Parameters
    ----------
    df : pandas.DataFrame
        The loaded table.

    Returns
    -------
    RoleProposal
        With ``positive_class`` proposed for the first label candidate.
    """
    columns = [c for c in df.columns if isinstance(c, str)]
    tokens = {c: _tokens(c) for c in columns}
    profiles = {c: _Profile.of(df[c]) for c in columns}

    id_column, other_ids = _choose_id(columns, tokens, profiles)
    quality = _first(
        c
        for c in columns
        if tokens[c] & _QUALITY_TOKENS and 1 <= profiles[c].n_distinct <= _MAX_CLASSES
    )
    site = _first(
        c
        for c in columns
        if c not in {id_column, quality}
        and tokens[c] & _SITE_TOKENS
        and 1 <= profiles[c].n_distinct <= _MAX_SITES
        and not profiles[c].continuous
    )
    identifying = {c: "identifier" for c in other_ids}
    for column in columns:
        if column in {id_column, quality, site} or column in identifying:
            continue
        reason = _identifying_reason(df[column], tokens[column], profiles[column])
        if reason is not None:
            identifying[column] = reason

    taken = {id_column, quality, site, *identifying}
    hinted = sorted(
        (c for c in columns if c not in taken and _label_rank(tokens[c]) is not None),
        key=lambda c: (_label_rank(tokens[c]), columns.index(c)),
    )
    labels = [c for c in hinted if profiles[c].label_like]
    others = [
        c
        for c in columns
        if c not in taken
        and c not in labels
        and profiles[c].label_like
        and (profiles[c].textual or profiles[c].n_distinct == 2)
    ]
    candidates = tuple(labels + others)
    positive = propose_positive_class(df[candidates[0]]) if candidates else None
    return RoleProposal(
        label_candidates=candidates,
        id=id_column,
        quality=quality,
        site=site,
        identifying=identifying,
        positive_class=positive,
    )


def propose_positive_class(values: pd.Series | Sequence[Any]) -> Any:
    """Propose which label value is the positive (disease) class.

    Parameters
    ----------
    values : pandas.Series or sequence
        The label column (missing values are ignored).

    Returns
    -------
    Any
        The first disease-like value (malignant, positive, abnormal, pneumonia, disease,
        cancer, yes, true, 1 ...); for two classes where one is healthy-like (benign, negative,
        normal, no ...), the other one; for two numbers, the larger; otherwise the minority
        class (ties: the later one in sorted order). Returned in the values' own type (the
        number 1, not the text "1"; numpy scalars as Python scalars).

    Raises
    ------
    DataError
        There are no non-missing values.
    """
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    present = series.dropna()
    if present.empty:
        raise DataError(
            "The label has no values (all missing), so there is no positive class to propose. "
            "Choose a label column that has values."
        )
    classes = [_plain(v) for v in pd.unique(present)]
    keys = {_key(c): c for c in classes}
    numbers = [n for n in (_as_number(c) for c in classes) if n is not None]
    if len(classes) == 2 and len(numbers) == 2:
        # Numeric codes: the larger is the positive one (0/1, 1/2), whatever their type.
        return classes[int(np.argmax(numbers))]
    for word in _POSITIVE_WORDS:
        if word in keys:
            return keys[word]
    if len(classes) == 2:
        healthy = [c for c in classes if _key(c) in _NEGATIVE_WORDS]
        if len(healthy) == 1:
            return next(c for c in classes if c is not healthy[0])
    counts = present.map(_key).value_counts()
    rarest = sorted(str(k) for k, n in counts.items() if n == counts.min())[-1]
    return keys[rarest]


def feature_columns(df: pd.DataFrame, roles: Roles) -> list[str]:
    """The columns that may become model features: all but ``roles.non_feature_columns()``.

    Parameters
    ----------
    df : pandas.DataFrame
    roles : Roles

    Returns
    -------
    list of str
        In the frame's column order.
    """
    skip = set(roles.non_feature_columns())
    return [c for c in df.columns if c not in skip]


@dataclass(frozen=True)
class _Profile:
    n_present: int
    n_distinct: int
    numeric: bool
    continuous: bool
    textual: bool
    probe: tuple[str, ...]

    @classmethod
    def of(cls, series: pd.Series) -> _Profile:
        present = series.dropna()
        numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype
        )
        continuous = False
        if numeric and pd.api.types.is_float_dtype(series.dtype) and len(present):
            values = present.to_numpy(dtype="float64")
            continuous = bool((np.mod(values[np.isfinite(values)], 1) != 0).any())
        textual = pd.api.types.is_string_dtype(series.dtype) or isinstance(
            series.dtype, pd.CategoricalDtype
        )
        # Continuous numbers are never labels, IDs or sites, so an exact count of their
        # distinct values (a costly hash of every value) is not needed: the head will do.
        counted = present.iloc[:_CONTINUOUS_HEAD] if continuous else present
        try:
            n_distinct = int(counted.nunique())
        except TypeError:
            n_distinct = int(counted.astype(str).nunique())
        probe: tuple[str, ...] = ()
        if textual and len(present):
            step = max(1, len(present) // _PROBE)
            probe = tuple(str(v).strip() for v in present.iloc[::step].tolist()[:_PROBE])
        return cls(len(present), n_distinct, numeric, continuous, textual, probe)

    @property
    def distinct_share(self) -> float:
        return self.n_distinct / self.n_present if self.n_present else 0.0

    @property
    def label_like(self) -> bool:
        return 2 <= self.n_distinct <= _MAX_CLASSES and not self.continuous

    def share(self, pattern: re.Pattern[str]) -> float:
        if not self.probe:
            return 0.0
        return sum(1 for v in self.probe if pattern.match(v)) / len(self.probe)


def _tokens(name: str) -> frozenset[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return frozenset(t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t)


def _first(columns: Iterable[str]) -> str | None:
    return next(iter(columns), None)


def _label_rank(tokens: frozenset[str]) -> int | None:
    # A lone "y" is a label; "y" inside a longer name is usually a coordinate.
    ranks = [
        i
        for i, hint in enumerate(_LABEL_HINTS)
        if hint in tokens and (hint != "y" or tokens == {"y"})
    ]
    return min(ranks) if ranks else None


def _id_like(tokens: frozenset[str]) -> bool:
    if tokens & _ID_TOKENS:
        return True
    return bool(tokens & _ID_NOUNS) and tokens <= _ID_NOUNS | _ID_SUFFIXES | _PATIENT_TOKENS


def _choose_id(
    columns: list[str], tokens: dict[str, frozenset[str]], profiles: dict[str, _Profile]
) -> tuple[str | None, list[str]]:
    usable: list[tuple[int, int, str]] = []
    named: list[str] = []
    for position, column in enumerate(columns):
        if not _id_like(tokens[column]):
            continue
        profile = profiles[column]
        if profile.continuous or profile.n_present == 0:
            continue
        named.append(column)
        patient_level = bool(tokens[column] & _PATIENT_TOKENS)
        if (patient_level and profile.n_distinct >= 2) or profile.distinct_share >= 0.9:
            usable.append((0 if patient_level else 1, position, column))
    if not usable:
        return None, named
    chosen = min(usable)[2]
    return chosen, [c for c in named if c != chosen]


def _identifying_reason(series: pd.Series, tokens: frozenset[str], profile: _Profile) -> str | None:
    dates = profile.share(_DATE)
    birth = bool(tokens & _BIRTH_TOKENS) or (
        "birth" in tokens and (bool(tokens & _DATE_TOKENS) or tokens == {"birth"} or dates >= 0.5)
    )
    if birth:
        return "dates of birth"
    if pd.api.types.is_datetime64_any_dtype(series.dtype) or dates >= 0.8:
        return "dates"
    if tokens & _EMAIL_TOKENS:
        return "e-mail addresses"
    if tokens & _PHONE_TOKENS:
        return "phone numbers"
    if tokens & _ADDRESS_TOKENS:
        return "addresses"
    if tokens & _OTHER_IDENTIFIER_TOKENS:
        return "name hint"
    if not profile.textual:
        return None
    names = profile.share(_PERSON)
    if tokens & _NAME_TOKENS and (
        names >= 0.5 or profile.distinct_share >= 0.5 or profile.n_distinct > _MAX_CLASSES
    ):
        return "person names"
    if profile.share(_EMAIL) >= 0.5:
        return "e-mail addresses"
    if profile.share(_STREET) >= 0.5:
        return "addresses"
    if profile.share(_PHONE) >= 0.8 and _digit_counts_ok(profile.probe):
        return "phone numbers"
    if (tokens & _NAME_PART_TOKENS and max(names, profile.share(_NAME_WORD)) >= 0.5) or (
        names >= 0.8 and profile.distinct_share >= 0.5 and profile.n_distinct > _MAX_CLASSES
    ):
        return "person names"
    if tokens & _TEXT_TOKENS and profile.n_distinct > _MAX_CLASSES:
        return "free text"
    if _free_text(profile):
        return "free text"
    return None


def _digit_counts_ok(probe: tuple[str, ...]) -> bool:
    """Phone numbers have 7 to 15 digits and some separator or a leading +/0."""
    hits = 0
    for value in probe:
        digits = sum(ch.isdigit() for ch in value)
        if 7 <= digits <= 15 and (not value.isdigit() or value.startswith(("0", "+"))):
            hits += 1
    return bool(probe) and hits / len(probe) >= 0.8


def _free_text(profile: _Profile) -> bool:
    if not profile.probe or profile.n_distinct <= _MAX_CLASSES:
        return False
    mean_length = sum(len(v) for v in profile.probe) / len(profile.probe)
    with_spaces = sum(1 for v in profile.probe if " " in v) / len(profile.probe)
    return mean_length > 30 and with_spaces >= 0.5 and profile.distinct_share >= 0.5


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
