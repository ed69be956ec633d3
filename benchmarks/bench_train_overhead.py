"""Training overhead: medimg ``auto`` against plain scikit-learn doing the same fits.

Target (issue 13): **training overhead <= 1.3x plain scikit-learn doing the same fits on the
same folds**. Printed, never asserted.

What is timed, interleaved, medians of ``--repeats`` runs (the machine is shared: read the
ratios, measured in the same run, not the seconds; the load average is printed beside them):

1. WDBC (``sample:wdbc``, 569 cases, 30 features, unique ``case_id``):
   * medimg in-process: ``training.train`` with ``model="auto"`` (7 kinds x 5 folds, bootstrap
     intervals for the leaderboard and the headline metrics, threshold, BBC-CV selection-free
     AUC, guards, one refit, the test rows scored);
   * the same through the command line, ``medimg train sample:wdbc`` in a fresh process
     (imports, loading, cleaning, training, saving the run);
   * baseline: the same scikit-learn pipelines (median imputation, standard scaling, model;
     the random forest with 100 trees as ``auto`` compares it, the SVMs calibrated by 5-fold
     sigmoid) on the same development rows and number of folds, all 35 fits on every core
     in one ``joblib.Parallel`` (scikit-learn's own ``cross_validate(n_jobs=-1)`` per model is
     also timed; the faster of the two is the baseline), then one refit of the chosen kind and
     the test rows predicted; and, for the command line, the same in a fresh ``python``
     process that imports scikit-learn and loads the data itself.
2. A MedMNIST-like feature table: PneumoniaMNIST's image features (extracted once by medimg
   before any timing; ``../shared/data/pneumoniamnist.npz``, skipped when absent), trained on
   the file's own development/test split, against the same baseline.

How fair the baseline is: it does the same model fits on the same rows, but nothing else
medimg does for honesty: no bootstrap intervals (1,000 replicates, leaderboard and headline),
no threshold choice, no selection-free (BBC-CV) estimate, no guards, no feature schema or
distance reference, and (command line) no cleaning report, audit entry or saved, encrypted
run. The ratio is therefore an upper bound on medimg's overhead for the fits themselves.

Usage: python benchmarks/bench_train_overhead.py [--repeats 3] [--no-cli] [--no-medmnist]
[--no-wdbc]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 1.3
NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
KINDS = ("logreg", "svm", "svm_linear", "rf", "hgb", "knn", "mlp")

_PLAIN_CHILD = """
import sys, time
started = time.perf_counter()
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold, train_test_split
sys.path.insert(0, {here!r})
from bench_train_overhead import plain_fits
data = load_breast_cancer(as_frame=True)
X, y = data.data, (data.target == 0).astype(int).to_numpy()
dev, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=42)
folds = list(StratifiedKFold(5, shuffle=True, random_state=42).split(dev, y[dev]))
plain_fits(X, y, dev, test, folds, chosen="logreg")
print(time.perf_counter() - started)
"""


def plain_pipeline(kind: str, columns: list[str], seed: int = 42) -> Any:
    """The pipeline medimg's ``auto`` compares for ``kind``, written with scikit-learn only."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    models: dict[str, Any] = {
        "logreg": LogisticRegression(max_iter=5000, random_state=seed),
        "svm": CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), method="sigmoid", cv=5),
        "svm_linear": CalibratedClassifierCV(
            LinearSVC(max_iter=10000, random_state=seed), method="sigmoid", cv=5
        ),
        "rf": RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1),
        "hgb": HistGradientBoostingClassifier(random_state=seed),
        "knn": KNeighborsClassifier(n_neighbors=15),
        "mlp": MLPClassifier(early_stopping=True, max_iter=1000, random_state=seed),
    }
    num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    prep = ColumnTransformer([("num", num, columns)], verbose_feature_names_out=False)
    return Pipeline([("prep", prep), ("model", models[kind])])


def _fit_predict(kind: str, X: Any, y: Any, tr: Any, va: Any) -> Any:
    pipeline = plain_pipeline(kind, list(X.columns))
    pipeline.fit(X.iloc[tr], y[tr])
    return pipeline.predict_proba(X.iloc[va])


def plain_fits(X: Any, y: Any, dev: Any, test: Any, folds: Any, *, chosen: str) -> None:
    """Baseline: every kind x fold on every core in one joblib.Parallel, one refit, the test."""
    from joblib import Parallel, delayed

    Xd, yd = X.iloc[dev], y[dev]
    Parallel(n_jobs=-1)(
        delayed(_fit_predict)(kind, Xd, yd, tr, va) for kind in KINDS for tr, va in folds
    )
    final = plain_pipeline(chosen, list(X.columns)).fit(Xd, yd)
    final.predict_proba(X.iloc[test])


def plain_cross_validate(X: Any, y: Any, dev: Any, test: Any, folds: Any, *, chosen: str) -> None:
    """Baseline in scikit-learn's own words: ``cross_validate(n_jobs=-1)`` per kind."""
    from sklearn.model_selection import cross_validate

    Xd, yd = X.iloc[dev], y[dev]
    for kind in KINDS:
        cross_validate(
            plain_pipeline(kind, list(X.columns)), Xd, yd, cv=folds, scoring="roc_auc", n_jobs=-1
        )
    final = plain_pipeline(chosen, list(X.columns)).fit(Xd, yd)
    final.predict_proba(X.iloc[test])


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - started, out


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


def _line(label: str, medimg: list[float], baseline: list[float], base_label: str) -> None:
    m, b = statistics.median(medimg), statistics.median(baseline)
    ratio = m / b
    verdict = "meets" if ratio <= TARGET else "ABOVE"
    print(
        f"  {label}: medimg {m:6.2f} s  vs {base_label} {b:6.2f} s  -> {ratio:4.2f}x "
        f"(target <= {TARGET}x: {verdict})"
    )


class _Case:
    """One data set: medimg's train() and the plain baselines on the same rows and folds."""

    warmed = False

    def __init__(self, name: str, data: Any, roles: Any, validation: Any, positive: Any) -> None:
        import numpy as np
        from sklearn.model_selection import StratifiedKFold

        from medimg_core.modelling.training import train

        self.name, self.data, self.roles = name, data, roles
        self.validation, self.positive = validation, positive
        # An untimed run: warms imports and caches, and gives the rows and the chosen kind.
        warm = train(data, roles, validation=validation, positive=positive)
        self.chosen = warm.model.kind
        index = {label: i for i, label in enumerate(data.index)}
        self.dev = np.asarray([index[i] for i in warm.dev_index])
        self.test = np.asarray([index[i] for i in warm.test_index])
        self.X = data.loc[:, list(warm.model.feature_columns)].astype(float)
        labels = data[roles.label]
        self.y = warm.model.encode_labels(labels)
        splitter = StratifiedKFold(validation.cv, shuffle=True, random_state=42)
        self.folds = list(splitter.split(self.dev, self.y[self.dev]))
        self.times: dict[str, list[float]] = {"medimg": [], "parallel": [], "cross_validate": []}
        if not _Case.warmed:
            # joblib keeps its worker processes between calls: start them (and their imports)
            # before timing, which favours the baseline.
            plain_fits(self.X, self.y, self.dev, self.test, self.folds, chosen=self.chosen)
            _Case.warmed = True

    def run_once(self) -> None:
        from medimg_core.modelling.training import train

        seconds, _ = _timed(
            train, self.data, self.roles, validation=self.validation, positive=self.positive
        )
        self.times["medimg"].append(seconds)
        args = (self.X, self.y, self.dev, self.test, self.folds)
        self.times["parallel"].append(_timed(plain_fits, *args, chosen=self.chosen)[0])
        self.times["cross_validate"].append(
            _timed(plain_cross_validate, *args, chosen=self.chosen)[0]
        )

    def report(self) -> None:
        t = self.times
        print(
            f"{self.name}: {len(self.dev)} development rows x {self.X.shape[1]} features, "
            f"{len(self.folds)} folds, {len(KINDS)} kinds, chosen {self.chosen}"
        )
        print(
            "  baselines: one joblib.Parallel over all fits "
            f"{statistics.median(t['parallel']):.2f} s; cross_validate(n_jobs=-1) per kind "
            f"{statistics.median(t['cross_validate']):.2f} s"
        )
        best = min(("parallel", "cross_validate"), key=lambda k: statistics.median(t[k]))
        _line("train() in-process", t["medimg"], t[best], f"plain scikit-learn ({best})")


def _wdbc_case() -> _Case:
    from medimg_core.modelling.validation import ValidationConfig
    from medimg_core.tables.cleaning import CleaningPlan, clean
    from medimg_core.tables.loading import read_data
    from medimg_core.tables.roles import Roles

    frame = read_data("sample:wdbc").frame
    roles = Roles(label="diagnosis", id="case_id")
    data = clean(frame, roles, CleaningPlan()).data
    return _Case("sample:wdbc", data, roles, ValidationConfig(), "malignant")


def _medmnist_case() -> _Case | None:
    if not NPZ.exists():
        print(f"MedMNIST part skipped: {NPZ} not found")
        return None
    from medimg_core.imaging.features import extract_features
    from medimg_core.imaging.sets import open_image_set
    from medimg_core.modelling.validation import ValidationConfig

    table = extract_features(open_image_set(NPZ), workers=2)
    validation = ValidationConfig(predefined_test=table.predefined_test())
    return _Case(f"PneumoniaMNIST features ({NPZ.name})", table.frame, table.roles(), validation, 1)


def _cli_once(home: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "MEDIMG_HOME": home}
        command = [sys.executable, "-m", "medimg_core", "train", "sample:wdbc", "-o", out + "/m"]
        seconds, done = _timed(subprocess.run, command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"medimg train failed:\n{done.stderr[-2000:]}")
        return float(seconds)


def _plain_child_once() -> float:
    code = _PLAIN_CHILD.format(here=str(Path(__file__).resolve().parent))
    seconds, done = _timed(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"plain scikit-learn child failed:\n{done.stderr[-2000:]}")
    return float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true", help="skip the subprocess comparison")
    parser.add_argument("--no-medmnist", action="store_true", help="skip the MedMNIST part")
    parser.add_argument("--no-wdbc", action="store_true", help="skip the in-process WDBC part")
    args = parser.parse_args()
    print(f"start: {_load()}")
    cases = [] if args.no_wdbc else [_wdbc_case()]
    if not args.no_medmnist:
        case = _medmnist_case()
        if case is not None:
            cases.append(case)
    cli: list[float] = []
    child: list[float] = []
    with tempfile.TemporaryDirectory() as home:
        for _ in range(max(1, args.repeats)):
            for case in cases:
                case.run_once()
            if not args.no_cli:
                cli.append(_cli_once(home))
                child.append(_plain_child_once())
    print(f"\nmedians of {args.repeats} interleaved runs; end: {_load()}")
    for case in cases:
        case.report()
    if cli:
        print(
            "command line, fresh process (imports, loading and, for medimg, cleaning and saving):"
        )
        _line("medimg train sample:wdbc", cli, child, "python + scikit-learn (Parallel)")
    print(
        "fairness: the baselines do the same fits on the same rows and fold sizes, and nothing "
        "else: no bootstrap intervals, threshold, BBC-CV, guards, distance reference or saved run."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
