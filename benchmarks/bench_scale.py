"""How training scales with rows: time and peak memory at 10k, 100k (and 1M) rows x 30 features.

For each size, synthetic data (scikit-learn's ``make_classification``: 30 features, 10
informative, two classes 70/30) is written once to a temporary Parquet file. Each configuration
then runs in a fresh child process, which reads the file and calls
``medimg_core.modelling.training.train`` with default settings (20% test set, 5 folds, 1,000
bootstrap replicates) and one model (``logreg`` or ``hgb``); the child reports its wall time for
``train`` and its peak memory (the PSS of the child and its pool workers, summed, sampled
every 20 ms: the whole process, Python and libraries included). Three ID variants: none, an ID unique per row, and about 3 rows per patient (a
patient's rows share the label, the usual case).

Baseline, in the same run and child-process set-up: plain scikit-learn doing the same fits:
``train_test_split`` (stratified 80/20), ``cross_validate`` of the same pipeline
(median imputation, standard scaling, the model with medimg's parameters) on 5 stratified folds
of the 80%, then a final fit and one ``predict_proba`` on the 20%, one thread per fit as
medimg fits (``threadpool_limits(1)``: unlimited OpenMP threads made HGB 10x slower on these
shared cores). It is the fastest fair way to
do the fits medimg does; it computes no intervals, calibration, threshold, guards or model card,
so a ratio above 1 is what medimg's honesty costs (the target is <= 1.3x, owned by
``bench_train_overhead.py``; here it is printed for scale).

Targets (issue 13), printed beside the figures:

- peak memory <= 4x the table's in-memory size at 1,000,000 rows (``--max-rows 1000000``);
- grouped (ID column) time <= 1.3x ungrouped at 100,000 rows;
- nothing grows faster than linearly: time per row and memory per row between sizes.

Run: ``python benchmarks/bench_scale.py [--max-rows 1000000] [--repeats 1] [--models logreg hgb]``.
The default (10k and 100k) takes a few minutes on two cores; 1M adds tens of minutes.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 2**20
SIZES = (10_000, 100_000, 1_000_000)
ID_VARIANTS = ("none", "unique", "3-per-patient")


def write_data(folder: Path, n_rows: int, seed: int = 0) -> Path:
    """``n_rows`` x 30 features with a label and two ID columns, as Parquet."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_rows,
        n_features=30,
        n_informative=10,
        n_redundant=5,
        weights=[0.7],
        flip_y=0.05,
        random_state=seed,
    )
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(30)])
    frame["label"] = np.where(y == 1, "case", "control")
    frame["row_id"] = np.arange(n_rows)
    # About 3 rows per patient, all with the patient's label: number the rows of each class
    # in a random order and put consecutive triples together.
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_rows)
    patient = np.empty(n_rows, dtype=np.int64)
    for cls in (0, 1):
        rows = order[y[order] == cls]
        patient[rows] = np.arange(rows.size) // 3 + (0 if cls == 0 else n_rows)
    frame["patient"] = patient
    path = folder / f"scale_{n_rows}.parquet"
    frame.to_parquet(path)
    return path


def _resident(proc: Any) -> int:
    """The process's proportional set size (PSS) where Linux reports it, else its RSS.

    Forked pool workers share the parent's pages (the table they inherit) until they write to
    them; summing RSS would count those pages once per process. PSS splits each shared page
    between the processes sharing it, so the sum over the tree is the memory really in use.
    """
    try:
        return int(proc.memory_full_info().pss)
    except (AttributeError, OSError):
        return int(proc.memory_info().rss)


class _PeakMemory:
    """Samples the memory of this process and its children (a pool's workers) every 20 ms: the
    peak of their sum (PSS, see :func:`_resident`) while running."""

    def __init__(self) -> None:
        import threading

        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        total = _resident(self._proc)
        for child in self._proc.children(recursive=True):
            with contextlib.suppress(Exception):  # a worker that just exited
                total += _resident(child)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    def __enter__(self) -> _PeakMemory:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def _release_freed_memory() -> None:
    """Give freed heap pages back to the system (glibc), so reading the file does not leave the
    process's resident size above what it holds before ``train`` starts."""
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _read(path: str, id_variant: str) -> Any:
    import pandas as pd

    frame = pd.read_parquet(path)
    keep = {"none": None, "unique": "row_id", "3-per-patient": "patient"}[id_variant]
    return frame.drop(columns=[c for c in ("row_id", "patient") if c != keep]), keep


def child_medimg(path: str, model: str, id_variant: str) -> dict[str, Any]:
    from medimg_core.modelling.models import ModelConfig
    from medimg_core.modelling.training import train
    from medimg_core.tables.roles import Roles

    imports = _PeakMemory().now() / MB
    data, id_column = _read(path, id_variant)
    table_mb = data.memory_usage(deep=True).sum() / MB
    _release_freed_memory()
    with _PeakMemory() as memory:
        started = time.perf_counter()
        train(data, Roles(label="label", id=id_column), config=ModelConfig(model=model))
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "table_mb": table_mb,
        "imports_mb": imports,
        "peak_mb": memory.peak / MB,
    }


def child_sklearn(path: str, model: str, id_variant: str) -> dict[str, Any]:
    import numpy as np
    from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
    from threadpoolctl import threadpool_limits

    from medimg_core.modelling.models import ModelConfig, build_pipeline
    from medimg_core.tables.cleaning import CleaningPlan

    imports = _PeakMemory().now() / MB
    data, _ = _read(path, id_variant)
    table_mb = data.memory_usage(deep=True).sum() / MB
    _release_freed_memory()
    columns = [c for c in data.columns if c.startswith("f")]
    memory = _PeakMemory().__enter__()
    started = time.perf_counter()
    X = data[columns]
    y = (data["label"] == "case").to_numpy().astype(int)
    X_dev, X_test, y_dev, _ = train_test_split(X, y, test_size=0.2, stratify=y, random_state=42)
    pipe = build_pipeline(
        ModelConfig(model=model), columns, [], impute_strategy=CleaningPlan().impute_strategy
    )
    folds = StratifiedKFold(5, shuffle=True, random_state=42)
    # One thread per fit, as medimg fits: on shared cores, OpenMP threads of HGB oversubscribe.
    with threadpool_limits(limits=1):
        cross_validate(pipe, X_dev, y_dev, cv=folds, scoring="roc_auc")
        pipe.fit(X_dev, y_dev)
        np.asarray(pipe.predict_proba(X_test))
    seconds = time.perf_counter() - started
    memory.__exit__()
    return {
        "seconds": seconds,
        "table_mb": table_mb,
        "imports_mb": imports,
        "peak_mb": memory.peak / MB,
    }


def run_child(kind: str, path: Path, model: str, id_variant: str) -> dict[str, Any]:
    """One configuration in a fresh process: its seconds and peak RSS (MB)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), model, id_variant],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1][:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_main(argv: list[str]) -> None:
    kind, path, model, id_variant = argv
    fn = child_medimg if kind == "medimg" else child_sklearn
    result = fn(path, model, id_variant)
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-rows", type=int, default=100_000)
    parser.add_argument("--sizes", type=int, nargs="+", help="row counts (overrides --max-rows)")
    parser.add_argument("--models", nargs="+", default=["logreg", "hgb"])
    parser.add_argument("--ids", nargs="+", default=list(ID_VARIANTS), choices=ID_VARIANTS)
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration (median)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    sizes = args.sizes or [n for n in SIZES if n <= args.max_rows]
    print(f"bench_scale: sizes {sizes}, models {args.models}, IDs {args.ids}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    results: dict[tuple[int, str, str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = write_data(Path(tmp), n)
            for model in args.models:
                configs = [("medimg", v) for v in args.ids]
                if not args.no_baseline:
                    configs.append(("sklearn", "none"))
                runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configs}
                # Interleaved repeats: each configuration sees the same spread of machine load.
                for _ in range(args.repeats):
                    for kind, variant in configs:
                        r = run_child(kind, path, model, variant)
                        r["load"] = os.getloadavg()[0]
                        runs[(kind, variant)].append(r)
                        status = r.get("error") or f"{r['seconds']:.1f} s, {r['peak_mb']:.0f} MB"
                        print(f"  {n:>9,} {model:6} {kind:7} id={variant:13} {status}", flush=True)
                for (kind, variant), rs in runs.items():
                    ok = [r for r in rs if "error" not in r]
                    if not ok:
                        results[(n, model, kind, variant)] = rs[0]
                        continue
                    ok.sort(key=lambda r: r["seconds"])
                    results[(n, model, kind, variant)] = ok[len(ok) // 2]

    print()
    header = (
        f"{'rows':>9} {'model':6} {'ID':13} {'seconds':>8} {'peak MB':>8} {'python':>7} "
        f"{'table MB':>8} {'peak/tbl':>8} {'(pk-py)/tbl':>11} {'grp/ungrp':>9} {'vs sklearn':>10} "
        f"{'s/row growth':>12} {'MB/row growth':>13} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for model in args.models:
        for variant in [*args.ids, *([] if args.no_baseline else ["sklearn"])]:
            previous: tuple[int, float, float] | None = None
            for n in sizes:
                kind = "sklearn" if variant == "sklearn" else "medimg"
                r = results.get((n, model, kind, "none" if variant == "sklearn" else variant), {})
                if "error" in r or not r:
                    print(f"{n:>9,} {model:6} {variant:13} {r.get('error', 'not run')}")
                    previous = None
                    continue
                plain = results.get((n, model, "medimg", "none"), {})
                base = results.get((n, model, "sklearn", "none"), {})
                grouped = (
                    r["seconds"] / plain["seconds"]
                    if variant not in ("none", "sklearn") and "seconds" in plain
                    else None
                )
                vs = r["seconds"] / base["seconds"] if "seconds" in base else None
                data_mb = r["peak_mb"] - r["imports_mb"]
                growth_t = growth_m = None
                if previous is not None:
                    m, t, d = previous
                    growth_t = (r["seconds"] / n) / (t / m)
                    growth_m = (data_mb / n) / (d / m)
                previous = (n, r["seconds"], data_mb)
                print(
                    f"{n:>9,} {model:6} {variant:13} {r['seconds']:>8.1f} {r['peak_mb']:>8.0f} "
                    f"{r['imports_mb']:>7.0f} {r['table_mb']:>8.0f} "
                    f"{r['peak_mb'] / r['table_mb']:>7.1f}x {data_mb / r['table_mb']:>10.1f}x "
                    f"{_fmt(grouped, '>8.2f')}x {_fmt(vs, '>9.2f')}x {_fmt(growth_t, '>11.2f')}x "
                    f"{_fmt(growth_m, '>12.2f')}x {r['load']:>5.1f}"
                )
    print(
        "\nTargets: peak/tbl <= 4x at 1,000,000 rows; grp/ungrp <= 1.3x at 100,000 rows;"
        " growth <= 1x (time and memory per row not rising with size; below 1 is fixed cost"
        " being spread).\npeak MB: the most memory (PSS) of the child and its worker"
        " processes together while training (sampled every 20 ms); python: the child's"
        " resident memory after imports, before reading the data (interpreter and libraries);"
        " (pk-py)/tbl: what the data and training hold, per MB of table; MB/row growth is"
        " taken on (peak - python).\n'vs sklearn': medimg's train time over plain"
        " scikit-learn's same fits (no intervals, threshold, guards or card)."
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        main()
