"""Column roles: which column is the label, the patient ID, the quality flag, the site, and which
columns identify a person and must never become model features."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import ConfigError, DataError

__all__ = [
    "PositiveChoice",
    "RoleProposal",
    "Roles",
    "choose_positive_class",
    "class_key",
    "feature_columns",
    "id_like_features",
    "is_numeric_codes",
    "parse_class_names",
    "propose_positive_class",
    "propose_roles",
]


@dataclass(frozen=True)
class Roles:
    """The roles the user confirmed. Every other column is a candidate feature.

    ``exclude`` holds identifying columns (names, dates of birth, phone numbers, addresses,
    free text) and anything else the user chose to leave out; they never reach a model.

    ``class_names`` gives the label's codes their names, as pairs (code as text, name), e.g.
    ``(("0", "malignant"), ("1", "benign"))``. This is the one place medimg keeps class names:
    the roles travel with the model and its card, and every table, figure and export that shows
    a class shows its name (see :meth:`class_name`).

    ``keep_as_feature`` lists numeric columns that look like patient or record numbers but that
    the user confirmed are real measurements (see :func:`id_like_features`).

    ``reader`` lists features that are themselves a reader's assessment (a radiologist's
    BI-RADS category, a pathologist's grade). They stay model features, but training also
    reports the model's performance without them, so nobody mistakes the reader's skill for the
    model's.

    ``subgroups`` lists columns whose groups (sex, age band, ...) get their own metrics with
    intervals. Marking a column as a subgroup does not change the features: a subgroup column
    that has no other role stays a feature; one that is also excluded is kept aside for the
    analysis only. The site column (``site``) is always analysed by site.
    """

    label: str | None = None
    id: str | None = None
    quality: str | None = None
    site: str | None = None
    exclude: tuple[str, ...] = ()
    class_names: tuple[tuple[str, str], ...] = ()
    keep_as_feature: tuple[str, ...] = ()
    reader: tuple[str, ...] = ()
    subgroups: tuple[str, ...] = ()

    def analysis_columns(self) -> tuple[str, ...]:
        """The site (if any) then the subgroup columns, each once: the columns analysed by group."""
        named = [self.site, *self.subgroups]
        taken = {self.label, self.id}
        return tuple(c for c in dict.fromkeys(named) if c and c not in taken)

    def class_name(self, value: Any) -> str:
        """The display name of a label value: its given name, else the value as text."""
        key = class_key(value)
        return dict(self.class_names).get(key, key)

    def class_code(self, name: Any) -> str | None:
        """The code (as text) whose given name is ``name`` (case-insensitive), if any."""
        wanted = str(name).strip().casefold()
        return next((k for k, v in self.class_names if v.strip().casefold() == wanted), None)

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
            "class_names": dict(self.class_names),
            "keep_as_feature": list(self.keep_as_feature),
            "reader": list(self.reader),
            "subgroups": list(self.subgroups),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Roles:
        return cls(
            label=d.get("label"),
            id=d.get("id"),
            quality=d.get("quality"),
            site=d.get("site"),
            exclude=tuple(d.get("exclude") or ()),
            class_names=tuple((str(k), str(v)) for k, v in (d.get("class_names") or {}).items()),
            keep_as_feature=tuple(d.get("keep_as_feature") or ()),
            reader=tuple(d.get("reader") or ()),
            # Older cards have no subgroups.
            subgroups=tuple(str(c) for c in d.get("subgroups") or ()),
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
    subgroups: tuple[str, ...] = ()

    def to_roles(self) -> Roles:
        """The proposal taken as it stands (first label candidate)."""
        return Roles(
            label=self.label_candidates[0] if self.label_candidates else None,
            id=self.id,
            quality=self.quality,
            site=self.site,
            exclude=tuple(self.identifying),
            subgroups=self.subgroups,
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
_SEX_TOKENS = frozenset({"sex", "gender"})
_AGE_TOKENS = frozenset({"age", "ageyears"})
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
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_SENTENCE_PUNCTUATION = re.compile(r"[,;:!?]|\.(\s|$)")
_TITLED_NAME = re.compile(r"\b(Dr|Mr|Mrs|Ms|Miss|Prof|Sister|Nurse)\.?\s+[A-Z][a-z]")
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
    * **Subgroups**: columns named like sex / gender or age (``age``, ``age_years``,
      ``patient_age``), with at least one non-missing value; they stay features unless
      excluded, and get their own metrics per group.
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
    subgroups = tuple(
        c
        for c in columns
        if c not in taken
        and profiles[c].n_distinct >= 1
        and tokens[c] & (_SEX_TOKENS | _AGE_TOKENS)
    )
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
    choice = (
        choose_positive_class(df[candidates[0]], label_name=candidates[0]) if candidates else None
    )
    positive = choice.value if choice is not None else None
    return RoleProposal(
        label_candidates=candidates,
        id=id_column,
        quality=quality,
        site=site,
        identifying=identifying,
        positive_class=positive,
        subgroups=subgroups,
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
        cancer, yes, true ...); for two classes where one is healthy-like (benign, negative,
        normal, no ...), the other one; for two numeric codes (0/1, 1/2, 2/4, "0"/"1"), None:
        numbers do not say which class is the disease, so the user must name it (see
        :func:`choose_positive_class`); otherwise the minority class (ties: the later one in
        sorted order). Returned in the values' own type (numpy scalars as Python scalars).

    Raises
    ------
    DataError
        There are no non-missing values.
    """
    present = _present(values)
    if present.empty:
        raise DataError(
            "The label has no values (all missing), so there is no positive class to propose. "
            "Choose a label column that has values."
        )
    return _propose_positive(present, _classes(present))


def _propose_positive(present: pd.Series, classes: list[Any]) -> Any:
    """:func:`propose_positive_class` given the label's non-missing values and its classes."""
    keys = {_key(c): c for c in classes}
    numbers = [n for n in (_as_number(c) for c in classes) if n is not None]
    if len(classes) == 2 and len(numbers) == 2:
        # Numeric codes say nothing about which class is the disease (BreastMNIST codes
        # malignant as 0): only the user, the column's name or given class names can.
        return None
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


@dataclass(frozen=True)
class PositiveChoice:
    """The positive class of a binary label and the rule that chose it, for the user.

    Attributes
    ----------
    value : the label value, in the label's own type.
    rule : one plain sentence naming the rule (shown on the pages, the CLI and the card).
    from_codes : True when the values themselves do not say it (numeric codes decided by the
        column name or the class names, or the rarer of two unrecognised words): the user is
        told which rule chose it.
    """

    value: Any
    rule: str
    from_codes: bool = False


_DISEASE_NAME_TOKENS = frozenset(
    {
        "malignant",
        "malignancy",
        "cancer",
        "carcinoma",
        "tumor",
        "tumour",
        "pneumonia",
        "disease",
        "diseased",
        "abnormal",
        "abnormality",
        "positive",
        "death",
        "dead",
        "died",
        "deceased",
        "mortality",
        "event",
        "recurrence",
        "relapse",
        "fracture",
        "infection",
        "infected",
        "pathology",
        "pathological",
        "diabetes",
        "diabetic",
        "stroke",
    }
)
_HEALTHY_NAME_TOKENS = frozenset(
    {"benign", "normal", "healthy", "negative", "control", "alive", "survived", "survival"}
)
_NEGATION_TOKENS = frozenset({"not", "no", "non", "without"})


def is_numeric_codes(values: pd.Series | Sequence[Any]) -> bool:
    """Whether a label holds exactly two numeric codes (0/1, 1/2, 2/4, "0"/"1", 0.0/1.0).

    Such codes do not say which class is the disease, so the positive class must be named.
    Booleans are not codes: True names the condition of the column.
    """
    return _numeric_codes(_classes(_present(values)))


def _present(values: pd.Series | Sequence[Any]) -> pd.Series:
    """The non-missing values of a label."""
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    return series.dropna()


def _classes(present: pd.Series) -> list[Any]:
    """The distinct values of a label's non-missing values, as plain Python scalars."""
    return [_plain(v) for v in pd.unique(present)]


def _numeric_codes(classes: list[Any]) -> bool:
    keyed = {_key(c): c for c in classes}
    return len(keyed) == 2 and all(_as_number(v) is not None for v in keyed.values())


def choose_positive_class(
    values: pd.Series | Sequence[Any],
    *,
    label_name: str | None = None,
    class_names: Sequence[tuple[str, str]] = (),
) -> PositiveChoice | None:
    """The positive class of a two-class label, or None when the user must name it.

    The rules, in order:

    * **Numeric codes** (see :func:`is_numeric_codes`): never "the larger number". With class
      names given for the codes, the name that reads as a disease (malignant, pneumonia ...)
      or, failing that, the one that is not healthy-like (benign, normal ...). Without, for the
      codes 0/1 only, the column name: ``malignant``, ``is_cancer``, ``pneumonia``,
      ``death``, ``event`` ... make 1 that condition; ``benign``, ``normal``, ``healthy`` ...
      make 1 the healthy class, so 0 is positive. A name that says both, or a negation
      (``not_malignant``), decides nothing. Otherwise None.
    * **Words** (malignant/benign, yes/no ...): :func:`propose_positive_class`.

    Parameters
    ----------
    values : the label column (missing values ignored).
    label_name : the label column's name.
    class_names : (code as text, name) pairs, as in :attr:`Roles.class_names`.

    Returns
    -------
    PositiveChoice or None
        None for numeric codes no rule decides, and for labels without two classes.
    """
    present = _present(values)
    classes = _classes(present)
    if len({_key(c) for c in classes}) != 2:
        return None
    if not _numeric_codes(classes):
        value = _propose_positive(present, classes)
        other = next(c for c in classes if _key(c) != _key(value))
        if _key(value) in _POSITIVE_WORDS or _key(other) in _NEGATIVE_WORDS:
            return PositiveChoice(value, f"'{value}' reads as the disease class of the label")
        return PositiveChoice(
            value,
            f"neither '{value}' nor '{other}' reads as a disease or as healthy, so the rarer "
            "class was taken; check it",
            from_codes=True,
        )
    named = _positive_from_names(classes, dict(class_names))
    if named is not None:
        return named
    return _positive_from_column_name(classes, label_name)


def _positive_from_names(classes: list[Any], names: dict[str, str]) -> PositiveChoice | None:
    given = {class_key(c): names.get(class_key(c)) for c in classes}
    if not all(given.values()):
        return None
    by_name = {_key(n): c for c, n in zip(classes, given.values(), strict=True)}
    words = {_key(n) for n in given.values() if n}
    healthy = [w for w in words if w in _NEGATIVE_WORDS or _tokens(w) & _HEALTHY_NAME_TOKENS]
    disease = [
        w
        for w in words
        if w not in healthy and (w in _POSITIVE_WORDS or _tokens(w) & _DISEASE_NAME_TOKENS)
    ]
    if len(disease) == 1:
        chosen = by_name[disease[0]]
        why = "its class name reads as the disease"
    elif len(healthy) == 1 and not disease:
        chosen = next(c for w, c in by_name.items() if w != healthy[0])
        why = "the other class's name reads as healthy"
    else:
        return None
    listed = ", ".join(f"{code} = {name}" for code, name in sorted(given.items()))
    return PositiveChoice(chosen, f"{why} (class names: {listed})", from_codes=True)


def _positive_from_column_name(classes: list[Any], label_name: str | None) -> PositiveChoice | None:
    if label_name is None or sorted(_key(c) for c in classes) != ["0", "1"]:
        return None
    tokens = _tokens(label_name)
    disease = tokens & _DISEASE_NAME_TOKENS
    healthy = tokens & _HEALTHY_NAME_TOKENS
    if tokens & _NEGATION_TOKENS or bool(disease) == bool(healthy):
        return None
    one = next(c for c in classes if _key(c) == "1")
    zero = next(c for c in classes if _key(c) == "0")
    if disease:
        word = sorted(disease)[0]
        return PositiveChoice(
            one,
            f"the label column is named {label_name!r}, so 1 is taken as '{word}' (positive) "
            "and 0 as its absence",
            from_codes=True,
        )
    word = sorted(healthy)[0]
    return PositiveChoice(
        zero,
        f"the label column is named {label_name!r}, so 1 is taken as '{word}' (the healthy "
        "class) and 0 as the positive class",
        from_codes=True,
    )


def class_key(value: Any) -> str:
    """A label value as text, the way class names are keyed: ``1.0`` and ``1`` are ``"1"``."""
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_class_names(text: str) -> tuple[tuple[str, str], ...]:
    """Read class names typed by a user: ``"0=malignant, 1=benign"``.

    Pairs are separated by commas, semicolons or new lines; each is ``code=name`` (``:`` and
    ``->`` also work). Spaces around codes and names are dropped; a name may contain spaces
    (``1 = benign lesion``). Codes written ``1.0`` are the code ``1``.

    Parameters
    ----------
    text : what the user typed; empty for no names.

    Returns
    -------
    tuple of (code, name)
        In the order given.

    Raises
    ------
    ConfigError
        A pair without a separator, an empty code or name, a code named twice, or two codes
        with the same name.
    """
    pairs: list[tuple[str, str]] = []
    for part in re.split(r"[,;\n]", text):
        part = part.strip()
        if not part:
            continue
        match = re.match(r"^(.*?)\s*(?:->|=|:)\s*(.*)$", part)
        if match is None or not match.group(1).strip() or not match.group(2).strip():
            raise ConfigError(
                f"Class names must be written code=name, e.g. '0=malignant,1=benign'; "
                f"could not read {part!r}."
            )
        code = class_key(_as_code(match.group(1).strip()))
        name = match.group(2).strip()
        if any(code == c for c, _ in pairs):
            raise ConfigError(f"The code {code!r} is named twice in the class names; name it once.")
        if any(name.casefold() == n.casefold() for _, n in pairs):
            raise ConfigError(
                f"Two codes are named {name!r} in the class names; give each class its own name."
            )
        pairs.append((code, name))
    return tuple(pairs)


def _as_code(text: str) -> Any:
    number = _as_number(text)
    if number is not None and number.is_integer() and re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        return int(number)
    return text


_ID_FEATURE_TOKENS = _ID_TOKENS | _ID_NOUNS | frozenset({"number", "no", "nr", "num"})


def id_like_features(df: pd.DataFrame, roles: Roles) -> dict[str, str]:
    """Numeric feature columns that look like patient or record numbers, with the reason.

    A column qualifies when its name reads like an identifier (id, number, no, patient, case,
    record, MRN ...) and its whole-number values are nearly all distinct (at least 95%) or
    never go down from one row to the next (at least 5 values: several rows per patient,
    numbered in order). Such a column would let a model learn the order in which
    patients were recorded; it must be marked as the ID or excluded, or kept on purpose
    (``roles.keep_as_feature``).

    Parameters
    ----------
    df : the data.
    roles : the roles; their feature columns are checked.

    Returns
    -------
    dict
        Column -> why it looks like an identifier, in the frame's column order.
    """
    found: dict[str, str] = {}
    for column in feature_columns(df, roles):
        if not isinstance(column, str) or column in roles.keep_as_feature:
            continue
        tokens = _tokens(column)
        if not (_id_like(tokens) or tokens & _ID_FEATURE_TOKENS):
            continue
        series = df[column]
        if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(
            series.dtype
        ):
            continue
        present = series.dropna()
        if len(present) < 3:
            continue
        values = present.to_numpy(dtype="float64")
        if not np.isfinite(values).all() or (np.mod(values, 1) != 0).any():
            continue
        n_distinct = int(present.nunique())
        if n_distinct / len(present) >= 0.95:
            found[column] = f"whole numbers, {n_distinct / len(present):.0%} distinct"
        elif n_distinct >= 5 and bool((np.diff(values) >= 0).all()):
            # Several rows per patient, numbered in the order they were recorded.
            found[column] = "whole numbers that only go up with the rows"
    return found


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
    if _free_text(profile) or _templated_text(profile, tokens):
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


def _templated_text(profile: _Profile, tokens: frozenset[str]) -> bool:
    """Notes written from a few templates: few distinct values, but each one a sentence.

    Categories are short ("left breast", "spiculated", "St Mary's Hospital"); a clinician's
    note is a sentence ("Patient reports mild pain, follow up in 2 weeks"). Counting distinct
    values cannot tell them apart when the notes come from a handful of templates, so each
    sampled value is judged by its words: see :func:`_sentence_like`. A column named like notes
    (note, comment, remark, report) needs less: values of three words or more on average.
    """
    if not profile.probe:
        return False
    sentences = sum(1 for v in profile.probe if _sentence_like(v)) / len(profile.probe)
    if sentences >= 0.5:
        return True
    if tokens & _TEXT_TOKENS:
        words = sum(len(_WORD.findall(v)) for v in profile.probe) / len(profile.probe)
        return words >= 3
    return False


def _sentence_like(value: str) -> bool:
    """A value that reads as a sentence rather than a category name.

    Eight words or more; or five words or more (at least 25 characters) with sentence
    punctuation, a number among the words (doses, intervals), or written in sentence case (a
    capital first word followed mostly by lower-case words, unlike title-case names of sites
    or hospitals); or four words naming a person ("seen by Dr Smith") with punctuation or in
    sentence case.
    """
    words = _WORD.findall(value)
    n = len(words)
    if n >= 8:
        return True
    if n < 4:
        return False
    punctuated = bool(_SENTENCE_PUNCTUATION.search(value))
    rest = words[1:]
    sentence_case = words[0][:1].isupper() and (
        sum(1 for w in rest if w[:1].islower()) >= 0.5 * len(rest)
    )
    if n >= 5 and len(value) >= 25:
        return punctuated or sentence_case or any(w[:1].isdigit() for w in words)
    names_someone = bool(_TITLED_NAME.search(value)) or any(
        w[:1].isupper() and words[i][:1].islower() for i, w in enumerate(rest)
    )
    return names_someone and (punctuated or sentence_case)


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
