"""Folded (exact) linear SHAP against shap's PermutationExplainer on the same pipeline.

Data: Wisconsin Diagnostic Breast Cancer (scikit-learn's ``load_breast_cancer``, 569 cases,
30 numeric features, malignant = positive). Pipeline: median imputation -> StandardScaler ->
PCA(10) -> LogisticRegression, fitted on 455 development cases. Both explainers explain the
log-odds of 50 held-out cases against the same 100 development rows as background.

The permutation explainer is given its minimum budget (``max_evals = 2 * 30 + 1``, one forward
and one backward permutation), which for a model that is additive in its columns, as this one
is, already yields the exact values, so the comparison is the most favourable to it. Its
one-off numba compilation in a fresh process is timed separately and left out of the ratio.
Targets: speed-up >= 1000x, max |difference| <= 1e-6.

Run: ``python benchmarks/bench_shap_linear.py``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from _common import load_line, wdbc_model
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from medimg_core.modelling.explain import ModelExplainer
from medimg_core.modelling.models import MedimgModel, ModelConfig

N_CASES = 50
N_BACKGROUND = 100


def wdbc_linear() -> tuple[MedimgModel, pd.DataFrame, pd.DataFrame]:
    """The fitted model, the development rows and the held-out rows."""
    return wdbc_model(
        "logreg",
        ModelConfig(model="logreg", pca=10),
        ("pca", PCA(n_components=10, random_state=0)),
        ("model", LogisticRegression(max_iter=5000)),
    )


def main() -> None:
    start = time.perf_counter()
    import shap

    import_s = time.perf_counter() - start
    model, X_dev, X_test = wdbc_linear()
    background = X_dev.sample(N_BACKGROUND, random_state=0)
    cases = X_test.iloc[:N_CASES]
    columns = list(model.feature_columns)
    print(load_line())

    def log_odds(matrix: np.ndarray) -> np.ndarray:
        return model.pipeline.decision_function(pd.DataFrame(matrix, columns=columns))

    masker = shap.maskers.Independent(background.to_numpy(), max_samples=N_BACKGROUND)
    permutation = shap.explainers.Permutation(log_odds, masker, seed=0)
    max_evals = 2 * len(columns) + 1
    start = time.perf_counter()
    permutation(cases.iloc[:1].to_numpy(), max_evals=max_evals, silent=True)
    warm_up_s = time.perf_counter() - start

    start, cpu = time.perf_counter(), time.process_time()
    reference = permutation(cases.to_numpy(), max_evals=max_evals, silent=True)
    permutation_s = time.perf_counter() - start
    permutation_cpu = time.process_time() - cpu

    repeats = 20
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        folded = ModelExplainer(model, background).explain(cases)
    folded_s = (time.perf_counter() - start) / repeats
    folded_cpu = (time.process_time() - cpu) / repeats

    explainer = ModelExplainer(model, background)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        explainer.explain(cases)
    explain_only_s = (time.perf_counter() - start) / repeats
    explain_only_cpu = (time.process_time() - cpu) / repeats

    values_gap = np.abs(folded.values - reference.values).max()
    base_gap = np.abs(folded.base_values - reference.base_values).max()
    target = model.pipeline.decision_function(cases)
    additivity = np.abs(folded.values.sum(axis=1) + folded.base_values - target).max()
    print(f"method: {folded.method}; output: {folded.output_space}")
    print(f"import shap: {import_s:.1f} s; first PermutationExplainer call: {warm_up_s:.1f} s")
    print(
        f"PermutationExplainer, {N_CASES} cases: {permutation_s * 1000:.0f} ms wall "
        f"({permutation_cpu * 1000:.0f} ms CPU)"
    )
    print(
        f"folded linear, {N_CASES} cases: {folded_s * 1000:.2f} ms wall incl. building the "
        f"explainer ({folded_cpu * 1000:.2f} ms CPU); {explain_only_s * 1000:.2f} ms wall "
        f"({explain_only_cpu * 1000:.2f} ms CPU) reusing it"
    )
    print(
        f"speed-up including the build: {permutation_s / folded_s:,.0f}x wall, "
        f"{permutation_cpu / folded_cpu:,.0f}x CPU; explainer reused (as the dashboard does): "
        f"{permutation_s / explain_only_s:,.0f}x wall, "
        f"{permutation_cpu / explain_only_cpu:,.0f}x CPU; target >= 1000x"
    )
    print(f"max |difference|: values {values_gap:.2e}, base values {base_gap:.2e}; target <= 1e-6")
    print(f"additivity: max |sum + base - log-odds| = {additivity:.2e}")


if __name__ == "__main__":
    main()
