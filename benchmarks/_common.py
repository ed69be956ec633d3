"""What the SHAP benchmarks share: a WDBC model fitted the way medimg fits one.

Data: Wisconsin Diagnostic Breast Cancer (scikit-learn's ``load_breast_cancer``, 569 cases,
30 numeric features, malignant = positive), split 80/20 stratified (455 development cases,
114 held out). The scripts import this module by name, so run them as
``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from medimg_core.modelling.models import MedimgModel, ModelConfig, build_preprocessor
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.roles import Roles


def wdbc_model(
    kind: str, config: ModelConfig, *steps: tuple[str, Any]
) -> tuple[MedimgModel, pd.DataFrame, pd.DataFrame]:
    """Median imputation and scaling, then ``steps``, fitted on the development rows.

    Returns the model, the development rows and the held-out rows.
    """
    data = load_breast_cancer(as_frame=True)
    X = data.data
    y = (data.target == 0).astype(int).to_numpy()  # 0 = malignant in scikit-learn's coding
    X_dev, X_test, y_dev, _ = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    columns = tuple(X.columns)
    pipeline = Pipeline([("prep", build_preprocessor(columns, ())), *steps]).fit(X_dev, y_dev)
    model = MedimgModel(
        pipeline=pipeline,
        kind=kind,
        config=config,
        feature_columns=columns,
        numeric_columns=columns,
        categorical_columns=(),
        categories={},
        feature_ranges={c: (float(X_dev[c].min()), float(X_dev[c].max())) for c in columns},
        classes=("benign", "malignant"),
        positive_class="malignant",
        threshold=0.5,
        roles=Roles(label="diagnosis"),
        plan=CleaningPlan(),
    )
    return model, X_dev, X_test


def load_line() -> str:
    """How busy the machine was, printed beside timings taken on shared cores."""
    return f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def interleaved_cpu_ms(
    calls: dict[str, Callable[[], Any]], rounds: int, per_round: int
) -> dict[str, list[float]]:
    """CPU milliseconds per call of each callable, measured in turn in each of ``rounds``."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.process_time()
            for _ in range(per_round):
                call()
            times[name].append((time.process_time() - start) * 1000 / per_round)
    return times
