"""Per-case prediction sets with a coverage guarantee (conformal prediction, via ``crepes``).

Instead of one class, each case gets the *set* of classes that cannot be ruled out at a chosen
confidence, e.g. 90%: ``{malignant}``, ``{benign}``, ``{malignant, benign}`` (the model cannot
tell: uncertain, refer) or ``{}`` (no class reaches the confidence: the probability is one that
development cases of every class rarely had, typically a borderline one; refer).
Over many new cases from the same population, the true class is in the set for at least the
chosen share of them.

How it is done
--------------
- Non-conformity of a class for a case is ``1 - P(class)`` (the "hinge" score of
  :func:`crepes.extras.hinge`).
- Calibration uses the **development** cases' out-of-fold probabilities stored with the run
  (:mod:`medimg_core.store.cases`): each was scored by a fold model that did not see it. The
  held-out test cases are never used to calibrate; they only measure the coverage achieved.
- Mondrian (class-conditional) by default: the scores are calibrated separately per true class,
  so the coverage holds for each class, not only on average (which matters when one class is
  rare: a plain calibration can meet 90% overall while missing the rare class far more often).
  Standard split-conformal (one calibration for all classes) is an option.
- p-values are not smoothed (no random tie-breaking), so a case's set depends on that case
  only and is the same on every run, in every partition of a batch and on every machine. This
  makes the sets slightly conservative (coverage at least the target).

What is guaranteed, honestly
----------------------------
Split conformal prediction guarantees coverage of at least the target when the calibration
scores come from the same model that scores new cases, on cases exchangeable with them. Here
the calibration scores come from the cross-validation's fold models while new cases are scored
by the final model refitted on all development data. That is the setting of cross-conformal
prediction (Vovk 2015): coverage close to the target in practice, but not guaranteed exactly in
finite samples (the related CV+ bound of Barber et al. 2021 is only ``1 - 2*alpha``, and it
assumes the fold models also score the new cases). The final model, trained on more cases, is
usually a little better than the fold models, which tends to make the sets conservative. This is
why the empirical coverage on the held-out test cases is always reported next to the target. Development cases of
one patient are calibrated as separate cases; new cases must come from the same population
(site, scanner, case mix) for any of this to hold.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from crepes import ConformalClassifier

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import Evaluation, _clopper_pearson, finite_or_none
from medimg_core.modelling.models import MedimgModel, class_names_by_code

__all__ = [
    "CARD_CONFIDENCES",
    "CONFIDENCES",
    "DEFAULT_CONFIDENCE",
    "EMPTY_TEXT",
    "GUARANTEE_NOTE",
    "SET_SIZE_KEYS",
    "UNCERTAIN_TEXT",
    "ConformalPredictor",
    "ConformalSummary",
    "check_confidence",
    "confidence_text",
    "conformal_card",
    "conformal_summary",
    "coverage_frame",
    "fit_conformal",
    "fit_scores",
    "set_column_name",
    "set_size_counts",
    "sets_sentence",
    "summarise_sets",
    "with_prediction_sets",
]

DEFAULT_CONFIDENCE = 0.9
CARD_CONFIDENCES: tuple[float, ...] = (0.9, 0.95)
"""Confidences summarised in the model card."""
CONFIDENCES: tuple[float, ...] = (0.8, 0.9, 0.95, 0.99)
"""Confidences offered in the dashboard."""

UNCERTAIN_TEXT = "uncertain, refer"
EMPTY_TEXT = "no class at this confidence, refer"
SET_SIZE_KEYS = ("single", "both/uncertain", "empty")
"""Keys of :attr:`ConformalSummary.set_sizes`: one class, two or more classes, no class."""

Probabilities = np.ndarray | Sequence[float] | Sequence[Sequence[float]] | pd.Series | pd.DataFrame
"""Probabilities as accepted: shape (n, k) in class-code order, or (n,) of P(positive)."""

GUARANTEE_NOTE = (
    "Calibrated on the development cases' cross-validated probabilities and applied to the "
    "final model, so the guarantee is that of cross-conformal prediction: coverage close to the "
    "target, not exactly guaranteed. The coverage measured on the held-out test cases is shown "
    "next to the target; it holds only for new cases from the same population."
)


def check_confidence(confidence: Any) -> float:
    """``confidence`` as a float strictly between 0 and 1.

    Raises
    ------
    ConfigError
        When it is not a number in (0, 1).
    """
    try:
        value = float(confidence)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value < 1.0:
        raise ConfigError(
            f"The confidence of the prediction sets must lie strictly between 0 and 1 (for "
            f"example 0.9 for 90%), got {confidence!r}."
        )
    return value


def confidence_text(confidence: float) -> str:
    """``0.9`` -> ``"90%"``, ``0.975`` -> ``"97.5%"``."""
    return f"{round(float(confidence) * 100, 6):g}%"


def set_column_name(confidence: float) -> str:
    """Name of the prediction-set column in prediction tables: ``"Prediction set (90%)"``."""
    return f"Prediction set ({confidence_text(confidence)})"


def set_size_counts(texts: Sequence[str] | pd.Series) -> dict[str, int]:
    """Counts of one-class, several-class and empty sets among set texts
    (:meth:`ConformalPredictor.set_text`), keyed by :data:`SET_SIZE_KEYS`."""
    values = pd.Series(texts, dtype=object).astype(str)
    several = int(values.str.endswith(f" — {UNCERTAIN_TEXT}").sum())
    empty = int(values.str.endswith(f" — {EMPTY_TEXT}").sum())
    return {"single": len(values) - several - empty, "both/uncertain": several, "empty": empty}


def sets_sentence(confidence: float, sizes: dict[str, int]) -> str:
    """One line on the prediction sets of new cases, e.g. for the CLI."""
    total = sum(sizes.values())
    return (
        f"Prediction sets at {confidence_text(confidence)} confidence: "
        f"{sizes.get('single', 0):,} of {total:,} case(s) with one class, "
        f"{sizes.get('both/uncertain', 0):,} uncertain (more than one class: refer), "
        f"{sizes.get('empty', 0):,} empty (no class at this confidence: refer)."
    )


@dataclass(frozen=True)
class ConformalPredictor:
    """A fitted conformal classifier at one confidence.

    Attributes
    ----------
    confidence : target share of cases whose set holds the true class, in (0, 1).
    mondrian : True when calibrated per true class (class-conditional coverage).
    class_names : display names in code order (binary: negative, positive; as
        :func:`medimg_core.modelling.models.class_names_by_code`); column ``j`` of the
        probabilities passed to :meth:`predict_sets` is the probability of ``class_names[j]``.
    scores : the calibration cases' non-conformity scores ``1 - P(true class)``.
    labels : the calibration cases' encoded true classes (indices into ``class_names``).
    shown_order : the order classes are written in a set (binary: positive first).
    """

    confidence: float
    mondrian: bool
    class_names: tuple[str, ...]
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    shown_order: tuple[int, ...] = ()

    @property
    def n_calibration(self) -> int:
        """Calibration cases."""
        return len(self.scores)

    @property
    def n_calibration_by_class(self) -> dict[str, int]:
        """Calibration cases per true class (display names)."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(counts[j]) for j, name in enumerate(self.class_names)}

    def at(self, confidence: float) -> ConformalPredictor:
        """The same calibration at another confidence."""
        return dataclasses.replace(self, confidence=check_confidence(confidence))

    def _crepes(self) -> ConformalClassifier:
        return ConformalClassifier().fit(
            self.scores, bins=self.labels if self.mondrian else None, seed=None
        )

    def p_values(self, proba: Probabilities) -> np.ndarray:
        """Conformal p-values, shape (n, k): how typical each class would be for each case.

        Parameters
        ----------
        proba : probabilities, shape (n, k) in the order of :attr:`class_names`; for a binary
            model also shape (n,) of P(positive).
        """
        matrix = self._matrix(proba)
        n, k = matrix.shape
        out = np.ones((n, k))
        if n == 0:
            return out
        conformal = self._crepes()
        for j in range(k):
            alphas = 1.0 - matrix[:, j]
            if self.mondrian:
                out[:, j] = conformal.predict_p(alphas, bins=np.full(n, j), smoothing=False)
            else:
                out[:, j] = conformal.predict_p(alphas, smoothing=False)
        return out

    def inclusion(self, proba: Probabilities) -> np.ndarray:
        """Boolean (n, k): class ``j`` is in case ``i``'s set (p-value >= 1 - confidence)."""
        return self.p_values(proba) >= 1.0 - self.confidence

    def predict_sets(self, proba: Probabilities) -> list[tuple[str, ...]]:
        """Each case's prediction set as class display names (positive class first, binary).

        Parameters
        ----------
        proba : as in :meth:`p_values`.
        """
        inside = self.inclusion(proba)
        order = self.shown_order or tuple(range(len(self.class_names)))
        return [tuple(self.class_names[j] for j in order if row[j]) for row in inside]

    def set_text(self, prediction_set: Sequence[str]) -> str:
        """A set as written for readers: ``"{malignant}"``,
        ``"{malignant, benign} — uncertain, refer"``, ``"{} — no class at this confidence, refer"``.
        """
        body = "{" + ", ".join(str(c) for c in prediction_set) + "}"
        if len(prediction_set) == 0:
            return f"{body} — {EMPTY_TEXT}"
        if len(prediction_set) > 1:
            return f"{body} — {UNCERTAIN_TEXT}"
        return body

    def set_texts(self, proba: Probabilities) -> list[str]:
        """:meth:`set_text` of each case's set."""
        return [self.set_text(s) for s in self.predict_sets(proba)]

    def quantiles(self) -> dict[str, float]:
        """Per class (Mondrian) or for all classes under the key ``"all"``: the largest
        non-conformity ``1 - P(class)`` still admitted, computed directly as the
        ``ceil((q + 1) * confidence)``-th smallest of the ``q`` calibration scores (infinite
        when there are too few calibration cases to ever exclude the class).

        A class is in a case's set exactly when ``1 - P(class)`` is at most this value, i.e.
        when ``P(class) >= 1 - quantile``.
        """

        def one(values: np.ndarray) -> float:
            q = len(values)
            rank = math.ceil((q + 1) * self.confidence - 1e-9)
            if rank > q:
                return math.inf
            return float(np.sort(values)[rank - 1])

        if not self.mondrian:
            return {"all": one(self.scores)}
        return {name: one(self.scores[self.labels == j]) for j, name in enumerate(self.class_names)}

    def notes(self) -> tuple[str, ...]:
        """Warnings about the calibration (classes too rare to ever be left out)."""
        needed = math.ceil(self.confidence / (1.0 - self.confidence) - 1e-9)
        counts = (
            self.n_calibration_by_class if self.mondrian else {"all classes": self.n_calibration}
        )
        out = []
        for name, n in counts.items():
            if n < needed:
                out.append(
                    f"Only {n} development case(s) of {name} calibrate the sets; at least "
                    f"{needed} are needed at {confidence_text(self.confidence)} confidence, so "
                    f"{name} is in every set. Choose a lower confidence or add cases."
                )
        return tuple(out)

    def _matrix(self, proba: Probabilities) -> np.ndarray:
        values = np.asarray(proba, dtype=float)
        k = len(self.class_names)
        if values.ndim == 1 and k == 2:
            values = np.column_stack([1.0 - values, values])
        if values.ndim != 2 or values.shape[1] != k:
            raise DataError(
                f"Prediction sets need one probability per class ({k} columns: "
                f"{', '.join(self.class_names)}), got shape {values.shape}; pass the model's "
                "predicted probabilities."
            )
        if np.isnan(values).any():
            raise DataError(
                "Some cases have no probability, so they get no prediction set; score them "
                "again with the model (missing values are imputed by its pipeline)."
            )
        return values


def _as_matrix(y_score: Probabilities, k: int) -> np.ndarray:
    values = np.asarray(y_score, dtype=float)
    if values.ndim == 1:
        if k != 2:
            raise DataError(
                f"Expected one probability column per class ({k}), got one column; pass the "
                "probabilities of every class."
            )
        values = np.column_stack([1.0 - values, values])
    return values


def fit_scores(
    y_true: np.ndarray | Sequence[int],
    y_score: Probabilities,
    class_names: Sequence[str],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    mondrian: bool = True,
    positive_first: bool | None = None,
) -> ConformalPredictor:
    """Calibrate prediction sets on scored calibration cases (array level).

    Parameters
    ----------
    y_true : encoded true classes (binary 0/1 with 1 = positive; else indices into
        ``class_names``).
    y_score : probabilities, shape (n,) of P(positive) for binary or (n, k).
    class_names : display names in code order (binary: negative, positive).
    confidence : target coverage in (0, 1).
    mondrian : calibrate per class (default) or all classes together.
    positive_first : write the positive class first in a set (default: for binary tasks).

    Raises
    ------
    ConfigError
        A confidence outside (0, 1).
    DataError
        No calibration case, missing probabilities or labels outside the classes.
    """
    confidence = check_confidence(confidence)
    names = tuple(str(c) for c in class_names)
    k = len(names)
    if k < 2:
        raise DataError("Prediction sets need at least two classes; this model has fewer.")
    labels = np.asarray(y_true, dtype=int)
    matrix = _as_matrix(y_score, k)
    if len(labels) == 0 or len(matrix) != len(labels):
        raise DataError(
            "Prediction sets need the development cases' cross-validated probabilities and "
            f"labels ({len(labels)} label(s), {len(matrix)} probability row(s)); retrain the "
            "model so its cases are stored."
        )
    if matrix.shape[1] != k or ((labels < 0) | (labels >= k)).any():
        raise DataError(
            f"The calibration labels or probabilities do not match the {k} classes "
            f"({', '.join(names)}); retrain the model so its cases are stored."
        )
    if np.isnan(matrix).any():
        raise DataError(
            "Some development cases have no cross-validated probability, so prediction sets "
            "cannot be calibrated; retrain the model so its cases are stored complete."
        )
    scores = 1.0 - matrix[np.arange(len(labels)), labels]
    first = (k == 2) if positive_first is None else positive_first
    order = (1, 0) if first and k == 2 else tuple(range(k))
    return ConformalPredictor(
        confidence=confidence,
        mondrian=bool(mondrian),
        class_names=names,
        scores=scores,
        labels=labels,
        shown_order=order,
    )


def _class_names(model: MedimgModel) -> tuple[str, ...]:
    return class_names_by_code(model.classes, model.positive_class, model.roles.class_names)


def _partition(
    model: MedimgModel, cases: pd.DataFrame, which: str
) -> tuple[np.ndarray, np.ndarray]:
    # The stored cases' column names (medimg_core.store.cases sits above this layer).
    label = model.roles.label
    columns = ["p_positive"] if model.is_binary else [f"p_{c}" for c in model.classes]
    missing = [c for c in [label, "partition", *columns] if c is None or c not in cases.columns]
    if missing:
        raise DataError(
            f"The stored cases lack the column(s) {missing}; they do not belong to this model. "
            "Retrain the model to rewrite them."
        )
    part = cases[cases["partition"] == which]
    y = model.encode_labels(part[label]) if len(part) else np.empty(0, dtype=int)
    scores = part[columns].to_numpy(dtype=float)
    return y, scores[:, 0] if model.is_binary else scores


def fit_conformal(
    model: MedimgModel,
    cases: pd.DataFrame,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    mondrian: bool = True,
) -> ConformalPredictor:
    """Calibrate prediction sets for ``model`` on its development cases (never the test rows).

    Parameters
    ----------
    model : the trained model.
    cases : its stored cases (:func:`medimg_core.store.cases.load_cases`); only rows with
        ``partition == "development"`` and their out-of-fold probabilities are used.
    confidence : target coverage in (0, 1), e.g. 0.9.
    mondrian : class-conditional calibration (coverage per class; default) or standard
        split-conformal.

    Returns
    -------
    ConformalPredictor
        Sets name classes by their display names; for a binary model the positive class is
        written first.

    Raises
    ------
    ConfigError
        A confidence outside (0, 1).
    DataError
        The cases lack the label or probability columns, or have no development row.
    """
    confidence = check_confidence(confidence)
    y, scores = _partition(model, cases, "development")
    if len(y) == 0:
        raise DataError(
            "The stored cases have no development rows, so prediction sets cannot be "
            "calibrated; retrain the model to rewrite them."
        )
    return fit_scores(y, scores, _class_names(model), confidence=confidence, mondrian=mondrian)


@dataclass(frozen=True)
class ConformalSummary:
    """How the prediction sets did on the held-out test cases.

    Attributes
    ----------
    confidence : the target coverage.
    mondrian : True when calibrated per class.
    n_calibration : development cases used to calibrate.
    test_coverage : share of test cases whose set holds the true class (None without test
        cases); compare with ``confidence``.
    test_coverage_by_class : per true class (display names) the same share.
    set_sizes : test cases with one class (``"single"``), two or more (``"both/uncertain"``)
        and none (``"empty"``).
    n_test : test cases.
    n_calibration_by_class : development cases per class.
    test_coverage_ci95 : exact (Clopper-Pearson) 95% interval of ``test_coverage``.
    notes : what a reader should know (the guarantee; too few calibration cases of a class).
    """

    confidence: float
    mondrian: bool
    n_calibration: int
    test_coverage: float | None
    test_coverage_by_class: dict[str, float]
    set_sizes: dict[str, int]
    n_test: int
    n_calibration_by_class: dict[str, int] = field(default_factory=dict)
    test_coverage_ci95: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()

    @property
    def falls_short(self) -> bool:
        """True when the test coverage is below the target beyond chance: the upper end of its
        exact 95% interval is under the target."""
        return self.test_coverage_ci95 is not None and self.test_coverage_ci95[1] < self.confidence

    @property
    def sentence(self) -> str:
        """One line for readers: the target next to the coverage measured on test cases, and a
        warning when the test cases miss it beyond chance."""
        target = confidence_text(self.confidence)
        if self.test_coverage is None:
            return (
                f"Target: the true class in the set for {target} of cases. No held-out test "
                "cases, so the coverage achieved was not measured."
            )
        per_class = ", ".join(
            f"{name} {value:.0%}" for name, value in self.test_coverage_by_class.items()
        )
        interval = (
            f" (95% CI {self.test_coverage_ci95[0]:.0%}–{self.test_coverage_ci95[1]:.0%})"
            if self.test_coverage_ci95 is not None
            else ""
        )
        return (
            f"Target {target}: on the {self.n_test:,} held-out test cases the true class was in "
            f"the set for {self.test_coverage:.1%}{interval}"
            + (f"; per class {per_class}" if per_class else "")
            + "."
            + (
                " That is below the target beyond chance: the test cases do not behave like the "
                "development cases the sets were calibrated on (the guarantee assumes new cases "
                "come from the same population), so do not rely on the sets for cases like these."
                if self.falls_short
                else ""
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None)."""
        return {
            "confidence": float(self.confidence),
            "mondrian": self.mondrian,
            "n_calibration": self.n_calibration,
            "n_calibration_by_class": dict(self.n_calibration_by_class),
            "test_coverage": finite_or_none(self.test_coverage),
            "test_coverage_ci95": None
            if self.test_coverage_ci95 is None
            else [finite_or_none(v) for v in self.test_coverage_ci95],
            "test_coverage_by_class": {
                k: finite_or_none(v) for k, v in self.test_coverage_by_class.items()
            },
            "set_sizes": dict(self.set_sizes),
            "n_test": self.n_test,
            "notes": list(self.notes),
        }


def summarise_sets(
    predictor: ConformalPredictor, y_true: np.ndarray | Sequence[int], y_score: Probabilities
) -> ConformalSummary:
    """Coverage and set sizes of ``predictor`` on held-out cases (array level).

    Parameters
    ----------
    predictor : a fitted predictor.
    y_true : encoded true classes of the held-out cases.
    y_score : their probabilities, as for :func:`fit_scores`.
    """
    labels = np.asarray(y_true, dtype=int)
    n = len(labels)
    notes = [GUARANTEE_NOTE, *predictor.notes()]
    sizes = dict.fromkeys(SET_SIZE_KEYS, 0)
    if n == 0:
        return ConformalSummary(
            confidence=predictor.confidence,
            mondrian=predictor.mondrian,
            n_calibration=predictor.n_calibration,
            test_coverage=None,
            test_coverage_by_class={},
            set_sizes=sizes,
            n_test=0,
            n_calibration_by_class=predictor.n_calibration_by_class,
            notes=tuple(notes),
        )
    inside = predictor.inclusion(_as_matrix(y_score, len(predictor.class_names)))
    covered = inside[np.arange(n), labels]
    width = inside.sum(axis=1)
    sizes["single"] = int((width == 1).sum())
    sizes["both/uncertain"] = int((width >= 2).sum())
    sizes["empty"] = int((width == 0).sum())
    by_class = {
        name: float(covered[labels == j].mean())
        for j, name in enumerate(predictor.class_names)
        if (labels == j).any()
    }
    return ConformalSummary(
        confidence=predictor.confidence,
        mondrian=predictor.mondrian,
        n_calibration=predictor.n_calibration,
        test_coverage=float(covered.mean()),
        test_coverage_by_class=by_class,
        set_sizes=sizes,
        n_test=n,
        n_calibration_by_class=predictor.n_calibration_by_class,
        test_coverage_ci95=_clopper_pearson(int(covered.sum()), n, 0.025),
        notes=tuple(notes),
    )


def conformal_summary(
    model: MedimgModel,
    cases: pd.DataFrame,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    mondrian: bool = True,
) -> ConformalSummary:
    """Calibrate on the development cases and measure coverage on the held-out test cases.

    The test cases are scored once, by the final model (their stored probabilities); nothing is
    chosen on them.

    Raises
    ------
    ConfigError
        A confidence outside (0, 1).
    DataError
        The cases lack the label or probability columns, or have no development row.
    """
    predictor = fit_conformal(model, cases, confidence=confidence, mondrian=mondrian)
    y_test, p_test = _partition(model, cases, "test")
    return summarise_sets(predictor, y_test, p_test)


def conformal_card(cv: Evaluation, test: Evaluation | None) -> dict[str, Any] | None:
    """The card's ``conformal`` entry: :meth:`ConformalSummary.to_dict` at each of
    :data:`CARD_CONFIDENCES`, keyed ``"0.9"``, ``"0.95"``, calibrated (per class) on the
    out-of-fold development evaluation ``cv`` and measured on ``test``.

    Returns None when the development evaluation cannot calibrate sets (no case).
    """
    if cv.n == 0:
        return None
    out: dict[str, Any] = {}
    for confidence in CARD_CONFIDENCES:
        fitted = fit_scores(cv.y_true, cv.y_score, cv.class_names, confidence=confidence)
        if test is None:
            result = summarise_sets(fitted, np.empty(0, dtype=int), np.empty((0, 2)))
        else:
            result = summarise_sets(fitted, test.y_true, test.y_score)
        out[f"{confidence:g}"] = result.to_dict()
    return out


def coverage_frame(summaries: Sequence[ConformalSummary]) -> pd.DataFrame:
    """One row per confidence: the target, the coverage on the held-out test cases (with its
    exact 95% interval), the coverage per true class and the set sizes, as shown to readers.

    Coverage columns are text ("90.4% (83.4–95.1%)"), ``n/a`` without test cases.
    """

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    rows = []
    for item in summaries:
        interval = (
            f" ({item.test_coverage_ci95[0]:.1%}–{item.test_coverage_ci95[1]:.1%})"
            if item.test_coverage_ci95 is not None
            else ""
        )
        row: dict[str, Any] = {
            "Target": confidence_text(item.confidence),
            "Test coverage (95% CI)": share(item.test_coverage) + interval,
        }
        for name, value in item.test_coverage_by_class.items():
            row[f"Coverage, {name}"] = share(value)
        row["One class"] = item.set_sizes.get("single", 0)
        row["Uncertain (2+ classes)"] = item.set_sizes.get("both/uncertain", 0)
        row["Empty"] = item.set_sizes.get("empty", 0)
        row["Test cases"] = item.n_test
        rows.append(row)
    return pd.DataFrame(rows)


def with_prediction_sets(
    frame: pd.DataFrame, model: MedimgModel, predictor: ConformalPredictor
) -> pd.DataFrame:
    """A prediction table (:func:`medimg_core.modelling.prediction.predict` output) with the
    column :func:`set_column_name` inserted after ``decision``.

    Each case's set depends on that case's probabilities only, so tables scored in parts get
    the same sets as the whole table.

    Raises
    ------
    DataError
        When the table lacks the model's probability columns.
    """
    if model.is_binary:
        columns = [f"p_{model.display_name(model.positive_class)}"]
    else:
        columns = [f"p_{model.display_name(c)}" for c in model.classes]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"The predictions lack the probability column(s) {missing}, so no prediction set "
            "can be given; score the cases with this model."
        )
    values = frame[columns].to_numpy(dtype=float)
    texts = predictor.set_texts(values[:, 0] if model.is_binary else values)
    name = set_column_name(predictor.confidence)
    out = frame.drop(columns=[name], errors="ignore")
    at = list(out.columns).index("decision") + 1 if "decision" in out.columns else len(out.columns)
    out.insert(at, name, texts)
    return out
