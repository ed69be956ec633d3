"""Start-up cost: what the ``medimg`` command line and the dashboard's first page import.

Every figure is the wall time of a fresh Python process (imports included), the median of
``--repeats`` rounds (default 5); the rounds are interleaved (one of each measurement per round)
so that the load of a shared machine falls on all of them alike. Read the ratios, not the
seconds.

Measured, each beside its baseline (the fastest fair way to do the same with the plain
libraries, in a process of its own):

- ``import medimg_core.cli`` (what every ``medimg`` command pays before it parses its options)
  against ``import numpy, pandas, sklearn``, the libraries any such tool needs. The baseline is
  generous to medimg: the command line needs none of them to parse its options.
- ``medimg --help`` and ``medimg runs`` (listing the registry, which needs SQLAlchemy but no
  model code) against the same import baseline and against ``python -c pass``.
- ``medimg train sample:wdbc --model logreg`` against a plain scikit-learn script doing the core
  of the same work: the same 569 cases, an 80/20 stratified split, 5-fold ``cross_validate`` of
  median imputation -> StandardScaler -> LogisticRegression, a refit, the test ROC AUC with 1,000
  bootstrap replicates (vectorised, as medimg's), and the model saved: once with joblib (the
  fastest) and once with skops (the safe format medimg uses; importing ``skops.io`` alone walks every
  scikit-learn module). It does less than medimg (no cleaning report, grouped split, calibration,
  prediction sets, decision curves, model card, registry and audit trail), so the ratio is an
  upper bound of medimg's overhead. Target from issue 13: training overhead <= 1.3x plain
  scikit-learn doing the same fits (measured on 7 models in bench_train_overhead.py).
- The dashboard's first page in a fresh process: ``app.py`` and the Data page run once through
  Streamlit's ``AppTest`` (no browser), against the same harness running a one-line page that
  shows a pandas table (the floor for any Streamlit page with a table). Targets from issue 13:
  a new session's first page <= 2 s; server start to first page <= 5 s (``bench_app.py``
  measures them in a browser; this isolates the import part).

Also printed: which heavy libraries each entry point loads (from ``sys.modules``), so a
regression shows as a name, not only as a slower figure.

Run: ``python benchmarks/bench_startup.py [--repeats 5] [--skip-train] [--skip-app]``.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HEAVY = (
    "PIL",
    "argon2",
    "crepes",
    "cryptography",
    "dask",
    "distributed",
    "fpdf",
    "kaleido",
    "numpy",
    "pandas",
    "plotly",
    "pyarrow",
    "pydicom",
    "pytest",
    "scipy",
    "shap",
    "skimage",
    "sklearn",
    "skops",
    "sqlalchemy",
    "streamlit",
)

BASELINE_TRAIN = """
import sys
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

data = load_breast_cancer(as_frame=True)
X, y = data.data, (data.target == 0).astype(int)
X_dev, X_test, y_dev, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=42)
pipe = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                 ("model", LogisticRegression(max_iter=1000))])
cv = cross_validate(pipe, X_dev, y_dev, cv=StratifiedKFold(5, shuffle=True, random_state=42),
                    scoring=("roc_auc", "accuracy"))
pipe.fit(X_dev, y_dev)
p = pipe.predict_proba(X_test)[:, 1]
yt = y_test.to_numpy()
# 1,000 bootstrap replicates of the test ROC AUC at once (Mann-Whitney on mid-ranks).
from scipy.stats import rankdata

rng = np.random.default_rng(42)
idx = rng.integers(0, len(yt), (1000, len(yt)))
yb, pb = yt[idx], p[idx]
n1 = yb.sum(axis=1)
n0 = yb.shape[1] - n1
ok = (n1 > 0) & (n0 > 0)
ranks = rankdata(pb, axis=1)
aucs = ((ranks * yb).sum(axis=1) - n1 * (n1 + 1) / 2)[ok] / (n1 * n0)[ok]
low, high = np.percentile(aucs, [2.5, 97.5])
print(f"cv auc {cv['test_roc_auc'].mean():.3f} test auc {roc_auc_score(yt, p):.3f} "
      f"({low:.3f}-{high:.3f})")
out = sys.argv[2]
if sys.argv[1] == "skops":
    import skops.io as sio
    sio.dump(pipe, out + ".skops")
else:
    import joblib
    joblib.dump(pipe, out + ".joblib")
"""

FIRST_PAGE = """
import os, sys, time
from streamlit import config
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

original = PagesManager.__init__


def init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    PagesManager.uses_pages_directory = False  # run through the router, as a server does


PagesManager.__init__ = init
config.set_option("server.address", "localhost")
at = AppTest.from_file(sys.argv[1], default_timeout=900).run()
if at.exception:
    raise SystemExit(f"the page raised: {at.exception[0].value}")
"""

MINIMAL_PAGE = """import pandas as pd
import streamlit as st

st.dataframe(pd.DataFrame({"a": [1, 2, 3]}))
"""


def run_seconds(argv: Sequence[str], env: dict[str, str], tree: Path) -> float:
    """Wall seconds of one process, from start to exit; fails loudly if it fails."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def loaded(code: str, env: dict[str, str], tree: Path) -> list[str]:
    """The heavy libraries in ``sys.modules`` after running ``code`` in a fresh process."""
    probe = (
        f"{code}\nimport sys\nprint('LOADED:', *sorted({{m.split('.')[0] for m in sys.modules}}"
        f" & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [PY, "-c", probe], env=env, cwd=tree, capture_output=True, text=True, check=True
    )
    last = [row for row in done.stdout.splitlines() if row.startswith("LOADED:")][-1]
    return last.split()[1:]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-train", action="store_true", help="no train measurements")
    parser.add_argument("--skip-app", action="store_true", help="no dashboard measurements")
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="the medimg checkout to measure (its medimg_core and app.py are run from there), "
        "default this one",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another checkout (e.g. `git archive HEAD | tar -x -C DIR`) whose medimg entry "
        "points run in the same interleaved rounds, printed as before -> after",
    )
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    print(f"measuring the code in {tree}" + (f" (before: {args.before})" if args.before else ""))

    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = {**os.environ, "MEDIMG_HOME": str(work / "home")}
    env.pop("MEDIMG_USER", None)
    env.pop("MEDIMG_DATABASE_URL", None)
    env.pop("MEDIMG_SCHEDULER", None)
    minimal = work / "minimal_page.py"
    minimal.write_text(MINIMAL_PAGE, encoding="utf-8")
    medimg = [PY, "-m", "medimg_core"]

    cases: dict[str, list[str]] = {
        "python -c pass": [PY, "-c", "pass"],
        "import numpy, pandas, sklearn (baseline)": [PY, "-c", "import numpy, pandas, sklearn"],
        "import medimg_core.cli": [PY, "-c", "import medimg_core.cli"],
        "medimg --help": [*medimg, "--help"],
    }
    if not args.skip_train:
        cases["medimg train sample:wdbc --model logreg"] = [
            *medimg, "train", "sample:wdbc", "--model", "logreg", "-o", str(work / "model"),
        ]  # fmt: skip
        cases["plain sklearn script, joblib (baseline)"] = [
            PY, "-c", BASELINE_TRAIN, "joblib", str(work / "plain"),
        ]  # fmt: skip
        cases["plain sklearn script, skops (baseline)"] = [
            PY, "-c", BASELINE_TRAIN, "skops", str(work / "plain"),
        ]  # fmt: skip
    cases["medimg runs"] = [*medimg, "runs"]
    if not args.skip_app:
        cases["dashboard: app.py + Data page, first run"] = [
            PY, "-c", FIRST_PAGE, str(tree / "app.py"),
        ]  # fmt: skip
        cases["streamlit: one-line table page (baseline)"] = [
            PY, "-c", FIRST_PAGE, str(minimal),
        ]  # fmt: skip

    runs: dict[str, tuple[list[str], Path, dict[str, str]]] = {
        name: (command, tree, env) for name, command in cases.items()
    }
    if args.before is not None:
        before_env = {**env, "MEDIMG_HOME": str(work / "home-before")}
        for name, command in cases.items():
            if name.startswith(("medimg", "import medimg", "dashboard")):
                if name.startswith("dashboard"):
                    command = [*command[:-1], str(args.before.resolve() / "app.py")]
                runs[f"{name} [before]"] = (command, args.before.resolve(), before_env)
    for where in {tree, *(w for _, w, _ in runs.values())}:  # byte-compiled alike, as installed
        subprocess.run(
            [PY, "-m", "compileall", "-q", "medimg_core", "app.py", "pages"], cwd=where, check=True
        )
    print(f"{len(runs)} measurements x {args.repeats} interleaved rounds; {os.cpu_count()} cores")
    times: dict[str, list[float]] = {name: [] for name in runs}
    loads = []
    for round_no in range(args.repeats):
        for name, (command, where, environment) in runs.items():
            times[name].append(run_seconds(command, environment, where))
        loads.append(os.getloadavg()[0])
        print(f"  round {round_no + 1}: load average {loads[-1]:.1f}", flush=True)
    med = {name: statistics.median(values) for name, values in times.items()}

    def line(name: str, baseline: str | None = None, target: str = "") -> None:
        spread = f"{min(times[name]):.2f}-{max(times[name]):.2f}"
        ratio = f"  {med[name] / med[baseline]:.2f}x {baseline}" if baseline else ""
        print(f"{name:<44} {med[name]:6.2f} s  (range {spread}){ratio}{target}")
        if f"{name} [before]" in med:
            before = med[f"{name} [before]"]
            was = f"  {before / med[baseline]:.2f}x" if baseline else ""
            print(
                f"{'  before:':<44} {before:6.2f} s{was}  ({before / med[name]:.1f}x the time now)"
            )

    base = "import numpy, pandas, sklearn (baseline)"
    print(
        f"\nmedian wall seconds of a fresh process (load average {min(loads):.1f}-{max(loads):.1f})"
    )
    line("python -c pass")
    line(base)
    line("import medimg_core.cli", base)
    line("medimg --help", base)
    line("medimg runs", base)
    if not args.skip_train:
        train = "medimg train sample:wdbc --model logreg"
        line("plain sklearn script, joblib (baseline)")
        line("plain sklearn script, skops (baseline)")
        line(train, "plain sklearn script, skops (baseline)")
        print(
            f"{'':<44} {med[train] / med['plain sklearn script, joblib (baseline)']:.2f}x the "
            "joblib script (target for training overhead, 7 models: <= 1.3x; this baseline does "
            "much less than medimg, see the docstring)"
        )
    if not args.skip_app:
        page = "dashboard: app.py + Data page, first run"
        line("streamlit: one-line table page (baseline)")
        line(
            page,
            "streamlit: one-line table page (baseline)",
            "  (target: server start to first page <= 5 s)",
        )

    print("\nheavy libraries loaded (from sys.modules):")
    probes = {
        "import medimg_core.cli": "import medimg_core.cli",
        "medimg --help (parser built)": "import medimg_core.cli as c; c.build_parser()",
        "medimg runs": "import medimg_core.cli as c; c.main(['runs'])",
        "import numpy, pandas, sklearn": "import numpy, pandas, sklearn",
    }
    if not args.skip_train:
        out = work / "model-probe"
        probes["medimg train (logreg)"] = (
            f"import medimg_core.cli as c; c.main(['train', 'sample:wdbc', '--model', 'logreg', "
            f"'-o', {str(out)!r}])"
        )
    for name, code in probes.items():
        print(f"  {name:<32} {' '.join(loaded(code, env, tree)) or '(none)'}")


if __name__ == "__main__":
    main()
