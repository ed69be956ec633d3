"""Test ROC AUC on PneumoniaMNIST with the default image features and model "auto".

Target (issue 4): test ROC AUC >= 0.96 on the file's own test split (its train and val splits
form the development data). For scale: on the full published split ResNet-18 reaches 0.944 and
auto-sklearn on raw pixels 0.942; this copy is a balanced subset, so figures are not directly
comparable.

Usage: python benchmarks/bench_pneumonia.py
Skips (exit 0) when ../shared/data/pneumoniamnist.npz is absent.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from medimg_core.imaging.features import extract_features
from medimg_core.imaging.sets import open_image_set
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def fmt(metric) -> str:
    low, high = metric.ci95
    return f"{metric.value:.3f} (95% CI {low:.3f}-{high:.3f})"


def main() -> int:
    if not NPZ.exists():
        print(f"skipped: {NPZ} not found (the benchmark needs the shared PneumoniaMNIST copy)")
        return 0
    start = time.perf_counter()
    table = extract_features(open_image_set(NPZ), workers=2)
    extracted = time.perf_counter() - start
    roles = table.roles()
    validation = ValidationConfig(predefined_test=table.predefined_test(), threshold="youden")
    start = time.perf_counter()
    result = train(
        table.frame, roles, config=ModelConfig(model="auto"), validation=validation, positive=1
    )
    trained = time.perf_counter() - start
    print(
        f"features: {len(table.feature_names)} per image, {len(table.frame)} images, "
        f"{extracted:.0f} s; training ('auto'): {trained:.0f} s"
    )
    for row in result.leaderboard:
        print(
            f"  {row.kind:<11} CV ROC AUC {fmt(row.roc_auc)}{'  <- chosen' if row.chosen else ''}"
        )
    assert result.test is not None
    auc = result.test.metrics["roc_auc"]
    print(f"chosen model: {result.model.kind}; threshold {result.model.threshold:.3f} (Youden, CV)")
    print(f"test ROC AUC {fmt(auc)}")
    print(f"test accuracy {fmt(result.test.metrics['accuracy'])}")
    print(f"test sensitivity {fmt(result.test.metrics['sensitivity'])}")
    print(f"test specificity {fmt(result.test.metrics['specificity'])}")
    verdict = "meets" if auc.value >= 0.96 else "BELOW"
    print(f"{verdict} the target of test ROC AUC >= 0.96 (n_test = {result.split.n_test})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
