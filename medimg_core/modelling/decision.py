"""Decision curve analysis: is acting on the model better than treating everyone, or no one?

Net benefit (Vickers & Elkin, Med Decis Making 2006) weighs true positives against false
positives at the exchange rate a threshold probability ``t`` implies: a clinician who would act
at ``t`` accepts ``t / (1 − t)`` unnecessary interventions for each diseased case found.

- model:       NB(t) = TP/n − FP/n · t/(1 − t), calling a case positive when P(positive) ≥ t
  (the convention of :mod:`medimg_core.modelling.evaluation`);
- treat all:   NB(t) = prevalence − (1 − prevalence) · t/(1 − t);
- treat none:  NB(t) = 0.

The default thresholds run from 0.01 to 0.99 in steps of 0.01: 0 and 1 are left out because at 0
every strategy that treats everyone is the same and at 1 the weight ``t/(1 − t)`` is infinite.
The chosen operating threshold is added to the grid so that the curve passes exactly through it.

:func:`net_benefit_at` gives the standard reading at one threshold: the net benefit of the model
and of treating everyone, and the *net reduction in interventions per 100 patients*,
``(NB_model − NB_all) · (1 − t)/t · 100``: as many fewer unnecessary interventions as
treating everyone would cause, with no more missed diseased cases.

Binary models only: decision curves of a multi-class model need a named positive class and a
threshold, which such a model does not have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import Evaluation, finite_or_none

__all__ = [
    "CARD_THRESHOLDS",
    "DEFAULT_THRESHOLDS",
    "DecisionCurve",
    "NetBenefitAt",
    "decision_card",
    "decision_curve",
    "decision_curves_card",
    "evaluation_curve",
    "net_benefit_at",
]

DEFAULT_THRESHOLDS = np.round(np.arange(1, 100) / 100, 2)
"""Threshold probabilities 0.01, 0.02, …, 0.99 (0 and 1 excluded: see the module docstring)."""

CARD_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
"""Thresholds summarised in the model card besides the chosen one."""

_GRID_TOL = 1e-9


def _weight(t: np.ndarray | float) -> Any:
    """The exchange rate t/(1 − t): unnecessary interventions accepted per case found."""
    return np.asarray(t, dtype=float) / (1.0 - np.asarray(t, dtype=float))


@dataclass(frozen=True)
class DecisionCurve:
    """Net benefit of the model and of treating everyone over a grid of threshold probabilities.

    Attributes
    ----------
    partition : "cv" (out-of-fold development predictions), "test" or "external".
    thresholds : threshold probabilities, increasing, strictly between 0 and 1.
    net_benefit : the model's net benefit at each threshold (positive when P ≥ t).
    treat_all : net benefit of treating every case as positive at each threshold.
    prevalence : share of positive cases.
    n : number of cases.
    chosen_threshold : the model's operating threshold (chosen on development data), if marked.
    y_true, p_positive : the cases behind the curve (0/1 labels, P(positive)); kept so that
        :meth:`at` is exact at any threshold. Not serialised; None for a curve read back from
        :meth:`to_dict`.

    Treating no one has net benefit 0 at every threshold.
    """

    partition: str
    thresholds: np.ndarray
    net_benefit: np.ndarray
    treat_all: np.ndarray
    prevalence: float
    n: int
    chosen_threshold: float | None
    y_true: np.ndarray | None = field(default=None, repr=False, compare=False)
    p_positive: np.ndarray | None = field(default=None, repr=False, compare=False)

    def at(self, t: float) -> tuple[float, float]:
        """(model, treat-all) net benefit at threshold ``t``.

        Exact when the curve holds its cases or ``t`` is on its grid; otherwise (a curve read
        back from a card) linearly interpolated between the neighbouring grid points, which is
        what the figure draws.

        Raises
        ------
        ConfigError
            When ``t`` is not strictly between 0 and 1.
        """
        t = _check_threshold(t, "threshold")
        treat_all = float(self.prevalence - (1.0 - self.prevalence) * _weight(t))
        if self.y_true is not None and self.p_positive is not None:
            return float(_net_benefit(self.y_true, self.p_positive, np.array([t]))[0]), treat_all
        thresholds = np.asarray(self.thresholds, dtype=float)
        hit = np.flatnonzero(np.abs(thresholds - t) <= _GRID_TOL)
        if hit.size:
            return float(self.net_benefit[hit[0]]), treat_all
        if not thresholds[0] <= t <= thresholds[-1]:
            raise ConfigError(
                f"The threshold {t:.3f} lies outside this decision curve's range "
                f"({thresholds[0]:.2f}–{thresholds[-1]:.2f}) and the curve's cases are not "
                "kept; rebuild the curve from the run's cases to read it there."
            )
        return float(np.interp(t, thresholds, self.net_benefit)), treat_all

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the curve's arrays as lists (NaN → None), without the cases."""
        return {
            "partition": self.partition,
            "thresholds": [float(t) for t in self.thresholds],
            "net_benefit": [finite_or_none(v) for v in self.net_benefit],
            "treat_all": [finite_or_none(v) for v in self.treat_all],
            "prevalence": finite_or_none(self.prevalence),
            "n": int(self.n),
            "chosen_threshold": finite_or_none(self.chosen_threshold),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionCurve:
        """A curve from :meth:`to_dict` (e.g. one recorded with an external evaluation)."""
        try:
            chosen = data.get("chosen_threshold")
            return cls(
                partition=str(data["partition"]),
                thresholds=np.asarray(data["thresholds"], dtype=float),
                net_benefit=np.asarray(
                    [np.nan if v is None else v for v in data["net_benefit"]], dtype=float
                ),
                treat_all=np.asarray(
                    [np.nan if v is None else v for v in data["treat_all"]], dtype=float
                ),
                prevalence=float(data["prevalence"]),
                n=int(data["n"]),
                chosen_threshold=None if chosen is None else float(chosen),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"The stored decision curve cannot be read ({exc!s}); it is incomplete. "
                "Rebuild it from the run's cases."
            ) from exc


@dataclass(frozen=True)
class NetBenefitAt:
    """The standard reading of a decision curve at one threshold.

    Attributes
    ----------
    partition : the curve's partition.
    threshold : the threshold probability read.
    net_benefit : the model's net benefit there (true positives per case, net of false
        positives weighted by ``t/(1 − t)``).
    treat_all : net benefit of treating everyone.
    prevalence : share of positive cases.
    interventions_avoided_per_100 : net reduction in interventions per 100 patients compared
        with treating everyone, ``(NB_model − NB_all) · (1 − t)/t · 100`` (negative when the
        model does worse than treating everyone).
    n : number of cases.
    """

    partition: str
    threshold: float
    net_benefit: float
    treat_all: float
    prevalence: float
    interventions_avoided_per_100: float
    n: int

    @property
    def best_strategy(self) -> str:
        """ "model", "treat all" or "treat none": the highest net benefit (ties favour the
        simpler strategy: treat none, then treat all)."""
        if self.net_benefit <= 0 and self.treat_all <= 0:
            return "treat none"
        if self.treat_all >= self.net_benefit:
            return "treat all"
        return "model"

    def sentence(self, positive_class: str) -> str:
        """One plain-language sentence for a clinician, naming the positive class."""
        head = (
            f"At threshold {self.threshold:.2f} the model's net benefit is "
            f"{self.net_benefit:.3f} vs {self.treat_all:.3f} for treating everyone"
        )
        best = self.best_strategy
        if best == "model":
            tail = (
                f": equivalent to {self.interventions_avoided_per_100:.1f} fewer unnecessary "
                f"interventions per 100 patients with no missed {positive_class} cases, "
                f"compared with treating everyone as {positive_class}."
            )
            if self.treat_all < 0:
                tail += (
                    f" It also beats treating no one: {100 * self.net_benefit:.1f} net "
                    f"{positive_class} cases found per 100 patients."
                )
            return head + tail
        if best == "treat all":
            return head + (
                f": at this threshold the model does no better than treating everyone as "
                f"{positive_class}."
            )
        return head + (
            ": at this threshold the model does no better than treating no one (net benefit "
            "at or below 0)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "net_benefit": finite_or_none(self.net_benefit),
            "treat_all": finite_or_none(self.treat_all),
            "interventions_avoided_per_100": finite_or_none(self.interventions_avoided_per_100),
        }


def _check_threshold(t: Any, name: str) -> float:
    try:
        value = float(t)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"The {name} must be a probability strictly between 0 and 1, got {t!r}."
        ) from exc
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ConfigError(
            f"The {name} must be a probability strictly between 0 and 1, got {value}: at 0 and "
            "1 net benefit is not defined (the weight t/(1 − t) is 0 or infinite). Pick a "
            "threshold such as 0.1–0.5."
        )
    return value


def _check_inputs(y_true01: Any, p_positive: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_positive)
    if p.ndim == 2 and p.shape[1] > 2:
        raise ConfigError(
            f"Decision curves need a two-class model; these probabilities have {p.shape[1]} "
            "columns (a multi-class model). Name one class as positive and score it against "
            "the rest to draw a decision curve for it."
        )
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    if p.ndim != 1:
        raise DataError(
            f"p_positive must be one probability per case (1-D), got shape {p.shape}; pass "
            "P(positive) for each case."
        )
    try:
        p = p.astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(
            "p_positive must hold numbers (probabilities of the positive class); it holds "
            "text. Pass the model's P(positive)."
        ) from exc
    y = np.asarray(y_true01)
    if y.ndim != 1 or len(y) != len(p):
        raise DataError(
            f"y_true01 has {y.size} value(s) and p_positive {len(p)}; pass one label and one "
            "probability per case."
        )
    if len(p) == 0:
        raise DataError("There are no cases to draw a decision curve from; score some cases first.")
    if np.isnan(p).any():
        raise DataError(
            f"{int(np.isnan(p).sum())} probability(ies) are missing (NaN); a decision curve "
            "needs a probability for every case. Score the missing cases or leave them out "
            "(for every strategy alike)."
        )
    if (p < 0).any() or (p > 1).any():
        bad = p[(p < 0) | (p > 1)][0]
        raise DataError(
            f"p_positive must hold probabilities between 0 and 1; found {bad:g}. Pass the "
            "model's P(positive), not a score or log-odds."
        )
    labels = set(np.unique(y).tolist()) if y.dtype != object else set(y.tolist())
    if not labels <= {0, 1}:
        shown = sorted(map(str, labels))[:4]
        if len(labels) > 2:
            raise ConfigError(
                f"Decision curves need a two-class outcome; y_true01 has {len(labels)} values "
                f"({', '.join(shown)}). Encode it as (label == positive_class).astype(int)."
            )
        raise DataError(
            f"y_true01 must be 0/1 (1 = the positive class), got values such as "
            f"{', '.join(shown)}. Encode it as (label == positive_class).astype(int)."
        )
    return y.astype(np.int64), p


def _net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """TP/n − FP/n · t/(1 − t) at each threshold, a case positive when p ≥ t (vectorised)."""
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    positives_below = np.concatenate([[0], np.cumsum(y[order])])
    # Cases at index >= k are those with p >= t (side="left" keeps ties as positive calls).
    k = np.searchsorted(p_sorted, thresholds, side="left")
    n = len(p)
    tp = positives_below[-1] - positives_below[k]
    fp = (n - k) - tp
    return np.asarray(tp / n - fp / n * _weight(thresholds), dtype=float)


def decision_curve(
    y_true01: Any,
    p_positive: Any,
    *,
    partition: str,
    chosen_threshold: float | None = None,
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> DecisionCurve:
    """Net benefit of the model, of treating all and (implicitly, 0) of treating none.

    Parameters
    ----------
    y_true01 : 0/1 outcome per case, 1 = the positive class.
    p_positive : P(positive) per case (out-of-fold for development, final model for test).
    partition : "cv", "test" or "external" (names the curve in figures).
    chosen_threshold : the model's operating threshold, marked on the figure and added to the
        grid so the curve passes exactly through it.
    thresholds : threshold probabilities, each strictly between 0 and 1; default
        :data:`DEFAULT_THRESHOLDS` (0.01–0.99 by 0.01).

    Returns
    -------
    DecisionCurve

    Raises
    ------
    ConfigError
        For a multi-class outcome or probabilities of more than two classes, or a threshold
        not strictly between 0 and 1.
    DataError
        For missing (NaN) or out-of-range probabilities, labels other than 0/1, mismatched
        lengths or no cases.
    """
    y, p = _check_inputs(y_true01, p_positive)
    if thresholds is None:
        grid = DEFAULT_THRESHOLDS.astype(float)
    else:
        grid = np.asarray(thresholds, dtype=float).ravel()
        if grid.size == 0:
            raise ConfigError("No thresholds were given; pass at least one, e.g. 0.1–0.5.")
        for t in grid:
            _check_threshold(t, "threshold")
    chosen = None
    if chosen_threshold is not None:
        chosen = _check_threshold(chosen_threshold, "chosen threshold")
        if not np.any(np.abs(grid - chosen) <= _GRID_TOL):
            grid = np.append(grid, chosen)
    grid = np.unique(grid)
    prevalence = float(y.mean())
    return DecisionCurve(
        partition=partition,
        thresholds=grid,
        net_benefit=_net_benefit(y, p, grid),
        treat_all=np.asarray(prevalence - (1.0 - prevalence) * _weight(grid), dtype=float),
        prevalence=prevalence,
        n=len(y),
        chosen_threshold=chosen,
        y_true=y,
        p_positive=p,
    )


def net_benefit_at(curve: DecisionCurve, threshold: float | None = None) -> NetBenefitAt:
    """Net benefit and net reduction in interventions per 100 patients at one threshold.

    Parameters
    ----------
    curve : a decision curve.
    threshold : default the curve's chosen threshold.

    Raises
    ------
    ConfigError
        When no threshold is given and the curve has no chosen threshold.
    """
    t = curve.chosen_threshold if threshold is None else threshold
    if t is None:
        raise ConfigError(
            "This decision curve has no chosen threshold; pass the threshold to read it at."
        )
    t = _check_threshold(t, "threshold")
    model, treat_all = curve.at(t)
    return NetBenefitAt(
        partition=curve.partition,
        threshold=t,
        net_benefit=model,
        treat_all=treat_all,
        prevalence=curve.prevalence,
        interventions_avoided_per_100=float((model - treat_all) / _weight(t) * 100.0),
        n=curve.n,
    )


def decision_card(curve: DecisionCurve | None) -> dict[str, Any] | None:
    """The model card's compact summary of a decision curve (None stays None).

    Net benefit of the model and of treating everyone at the chosen threshold and at
    :data:`CARD_THRESHOLDS`, with the prevalence; the full curve is rebuilt from the run's
    cases.
    """
    if curve is None:
        return None
    chosen = net_benefit_at(curve) if curve.chosen_threshold is not None else None
    return {
        "n": int(curve.n),
        "prevalence": finite_or_none(curve.prevalence),
        "chosen": chosen.to_dict() if chosen is not None else None,
        "at": [net_benefit_at(curve, t).to_dict() for t in CARD_THRESHOLDS],
        "thresholds": f"{curve.thresholds[0]:.2f}–{curve.thresholds[-1]:.2f}",
        "method": "net benefit = TP/n − FP/n · t/(1 − t), positive when P ≥ t; "
        "treat all = prevalence − (1 − prevalence) · t/(1 − t); treat none = 0",
    }


def evaluation_curve(
    evaluation: Evaluation | None, *, chosen_threshold: float | None = None
) -> DecisionCurve | None:
    """The decision curve of a two-class :class:`Evaluation` (None for none or multi-class).

    ``chosen_threshold`` defaults to the evaluation's threshold (chosen on development data);
    a threshold of exactly 0 or 1 is not marked (net benefit is not defined there).
    """
    if evaluation is None or not evaluation.is_binary:
        return None
    t = evaluation.threshold if chosen_threshold is None else chosen_threshold
    marked = float(t) if t is not None and 0.0 < float(t) < 1.0 else None
    return decision_curve(
        evaluation.y_true,
        evaluation.y_score,
        partition=evaluation.partition,
        chosen_threshold=marked,
    )


def decision_curves_card(cv: Evaluation | None, test: Evaluation | None) -> dict[str, Any] | None:
    """The card's ``"decision_curve"`` entry: ``{"cv": ..., "test": ...}``; None for multi-class."""
    curves = {"cv": evaluation_curve(cv), "test": evaluation_curve(test)}
    if all(c is None for c in curves.values()):
        return None
    return {name: decision_card(curve) for name, curve in curves.items()}
