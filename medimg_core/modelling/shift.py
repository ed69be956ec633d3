"""Feature shift: how a new site's cases differ from the development cases, feature by feature.

For each feature the development rows of a saved run (the *reference*) are compared with a new
file:

- numeric features: the **standardised mean difference** (SMD) ``(mean_new − mean_reference) /
  pooled SD`` with the pooled SD ``sqrt((sd_reference² + sd_new²) / 2)`` (sample SDs, missing
  values left out), the two means and SDs, the share of missing values in each, and the
  two-sample Kolmogorov–Smirnov statistic (the largest gap between the two cumulative
  distributions, 0 to 1);
- categorical features: the category whose share differs most, with the SMD of that share
  ``(p_new − p_reference) / sqrt((p_reference(1 − p_reference) + p_new(1 − p_new)) / 2)``.

Convention (Austin 2009, used for covariate balance): |SMD| above :data:`SMALL_SHIFT` (0.1) is a
small shift, above :data:`NOTABLE_SHIFT` (0.2) a notable one. The SMD says how far apart the
centres are in units of spread; it does not test a hypothesis and does not depend on the number
of cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from medimg_core._messages import format_value
from medimg_core.errors import DataError

__all__ = [
    "NOTABLE_SHIFT",
    "SHIFT_CONVENTION",
    "SMALL_SHIFT",
    "FeatureShift",
    "feature_shift",
    "shift_flag",
]

SMALL_SHIFT = 0.1
"""|SMD| above this is a small shift."""

NOTABLE_SHIFT = 0.2
"""|SMD| above this is a notable shift."""

SHIFT_CONVENTION = (
    "Standardised mean difference (SMD) = (new mean − development mean) / pooled SD, with the "
    "pooled SD = √((SD² development + SD² new) / 2); for a category, the same for the share of "
    f"the category that differs most. |SMD| > {SMALL_SHIFT:g} is a small shift, > "
    f"{NOTABLE_SHIFT:g} a notable one (Austin 2009)."
)
"""How the shift is measured and flagged, for every display."""


def shift_flag(smd: float | None) -> str:
    """ "notable", "small" or "none" for a standardised mean difference (None: "not estimable")."""
    if smd is None or math.isnan(smd):
        return "not estimable"
    size = abs(smd)
    if size > NOTABLE_SHIFT:
        return "notable"
    if size > SMALL_SHIFT:
        return "small"
    return "none"


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    return value


@dataclass(frozen=True)
class FeatureShift:
    """One feature compared between the development cases and a new file.

    Attributes
    ----------
    feature : the feature's name.
    smd : standardised mean difference, new minus development (see the module docstring);
        ``inf`` when the feature is constant in both and the values differ, NaN when a side
        has no value.
    mean_reference, mean_new : the means (numeric) or the shares of ``category`` (categorical).
    sd_reference, sd_new : the sample SDs (numeric) or ``sqrt(p(1 − p))`` of the shares.
    missing_reference, missing_new : the share of missing values in each (0 to 1).
    ks : two-sample Kolmogorov–Smirnov statistic (numeric only; None for categories).
    kind : "numeric" or "categorical".
    category : for a categorical feature, the category whose share differs most.
    n_reference, n_new : cases compared on each side.
    """

    feature: str
    smd: float
    mean_reference: float
    mean_new: float
    sd_reference: float
    sd_new: float
    missing_reference: float
    missing_new: float
    ks: float | None
    kind: str = "numeric"
    category: str | None = None
    n_reference: int = 0
    n_new: int = 0

    @property
    def flag(self) -> str:
        """ "notable" (|SMD| > 0.2), "small" (> 0.1), "none" or "not estimable"."""
        return shift_flag(None if math.isnan(self.smd) else self.smd)

    @property
    def sentence(self) -> str:
        """The shift in plain words, e.g. "notable shift: higher in the new data (mean 15.2 vs
        14.1, SMD +0.31)"."""
        if math.isnan(self.smd):
            return "cannot be compared: one of the two data sets has no value for it"
        if self.kind == "categorical":
            what = (
                f"share of {self.category!r} {self.mean_new:.0%} in the new data vs "
                f"{self.mean_reference:.0%} in development"
            )
        else:
            what = (
                f"mean {format_value(self.mean_new)} in the new data vs "
                f"{format_value(self.mean_reference)} in development"
            )
        smd = "∞" if math.isinf(self.smd) else f"{self.smd:+.2f}".replace("-", "−")
        direction = "higher" if self.smd > 0 else "lower"
        flag = self.flag
        if flag == "none":
            head = "no meaningful shift"
        else:
            head = f"{flag} shift, {direction} in the new data"
        missing = ""
        if abs(self.missing_new - self.missing_reference) >= 0.05:
            missing = (
                f"; missing in {self.missing_new:.0%} of new cases vs "
                f"{self.missing_reference:.0%} in development"
            )
        return f"{head} ({what}, SMD {smd}){missing}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "category": self.category,
            "smd": _clean(self.smd),
            "flag": self.flag,
            "mean_reference": _clean(self.mean_reference),
            "mean_new": _clean(self.mean_new),
            "sd_reference": _clean(self.sd_reference),
            "sd_new": _clean(self.sd_new),
            "missing_reference": _clean(self.missing_reference),
            "missing_new": _clean(self.missing_new),
            "ks": _clean(self.ks) if self.ks is not None else None,
            "n_reference": int(self.n_reference),
            "n_new": int(self.n_new),
            "sentence": self.sentence,
        }


def _smd(mean_ref: float, mean_new: float, sd_ref: float, sd_new: float) -> float:
    if not all(math.isfinite(v) for v in (mean_ref, mean_new)):
        return float("nan")
    pooled = math.sqrt((sd_ref**2 + sd_new**2) / 2) if math.isfinite(sd_ref + sd_new) else 0.0
    diff = mean_new - mean_ref
    if pooled > 0:
        return diff / pooled
    return 0.0 if diff == 0 else math.copysign(float("inf"), diff)


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _numeric(name: str, ref: pd.Series, new: pd.Series) -> FeatureShift:
    a = pd.to_numeric(ref, errors="coerce").to_numpy(dtype=float)
    b = pd.to_numeric(new, errors="coerce").to_numpy(dtype=float)
    a_ok, b_ok = a[np.isfinite(a)], b[np.isfinite(b)]
    mean_a = float(a_ok.mean()) if len(a_ok) else float("nan")
    mean_b = float(b_ok.mean()) if len(b_ok) else float("nan")
    sd_a, sd_b = _sd(a_ok), _sd(b_ok)
    ks = float(ks_2samp(a_ok, b_ok).statistic) if len(a_ok) and len(b_ok) else None
    return FeatureShift(
        feature=name,
        smd=_smd(mean_a, mean_b, sd_a, sd_b),
        mean_reference=mean_a,
        mean_new=mean_b,
        sd_reference=sd_a,
        sd_new=sd_b,
        missing_reference=float(1 - len(a_ok) / len(a)) if len(a) else 0.0,
        missing_new=float(1 - len(b_ok) / len(b)) if len(b) else 0.0,
        ks=ks,
        kind="numeric",
        n_reference=len(a),
        n_new=len(b),
    )


def _categorical(name: str, ref: pd.Series, new: pd.Series) -> FeatureShift:
    def text(values: pd.Series) -> pd.Series:
        return values.map(lambda v: v if pd.isna(v) else str(v))

    a, b = text(ref), text(new)
    a_ok, b_ok = a.dropna(), b.dropna()
    share_a = a_ok.value_counts(normalize=True) if len(a_ok) else pd.Series(dtype=float)
    share_b = b_ok.value_counts(normalize=True) if len(b_ok) else pd.Series(dtype=float)
    categories = sorted(set(share_a.index) | set(share_b.index))
    best: tuple[float, str, float, float] | None = None
    for category in categories:
        p_a, p_b = float(share_a.get(category, 0.0)), float(share_b.get(category, 0.0))
        gap = abs(p_b - p_a)
        if best is None or gap > best[0]:
            best = (gap, category, p_a, p_b)
    if best is None or not len(a_ok) or not len(b_ok):
        smd, category, p_a, p_b = float("nan"), None, float("nan"), float("nan")
        sd_a = sd_b = float("nan")
    else:
        _, category, p_a, p_b = best
        sd_a, sd_b = math.sqrt(p_a * (1 - p_a)), math.sqrt(p_b * (1 - p_b))
        smd = _smd(p_a, p_b, sd_a, sd_b)
    return FeatureShift(
        feature=name,
        smd=smd,
        mean_reference=p_a,
        mean_new=p_b,
        sd_reference=sd_a,
        sd_new=sd_b,
        missing_reference=float(a.isna().mean()) if len(a) else 0.0,
        missing_new=float(b.isna().mean()) if len(b) else 0.0,
        ks=None,
        kind="categorical",
        category=category,
        n_reference=len(a),
        n_new=len(b),
    )


def feature_shift(
    reference: pd.DataFrame,
    new: pd.DataFrame,
    columns: Sequence[str],
    *,
    categorical: Sequence[str] = (),
) -> tuple[FeatureShift, ...]:
    """Compare each feature of ``new`` with ``reference`` (the development cases).

    Parameters
    ----------
    reference : the development rows (e.g. the run's stored cases, partition "development").
    new : the new file.
    columns : the features to compare (the model's feature columns).
    categorical : features to treat as categories; other columns are numeric unless their
        values are text in the reference.

    Returns
    -------
    tuple of FeatureShift
        Largest |SMD| first (features that cannot be compared last).

    Raises
    ------
    DataError
        When either side has no row, or a column is missing from either side.
    """
    if not len(reference) or not len(new):
        raise DataError(
            "Feature shift needs cases on both sides: the development cases or the new file is "
            "empty. Load a file with at least one case."
        )
    missing = [c for c in columns if c not in reference.columns or c not in new.columns]
    if missing:
        raise DataError(
            f"Feature shift cannot compare {missing}: the column(s) are missing from the "
            "development cases or the new file. Use the model's feature names in the new file."
        )
    as_category = set(categorical)
    out: list[FeatureShift] = []
    for column in columns:
        ref = reference[column]
        is_text = (
            not pd.api.types.is_numeric_dtype(ref)
            and pd.to_numeric(ref.dropna(), errors="coerce").isna().any()
        )
        if column in as_category or is_text:
            out.append(_categorical(str(column), ref, new[column]))
        else:
            out.append(_numeric(str(column), ref, new[column]))

    def order(s: FeatureShift) -> tuple[int, float]:
        return (1, 0.0) if math.isnan(s.smd) else (0, -abs(s.smd))

    return tuple(sorted(out, key=order))
