"""Time :func:`medimg_core.tables.cleaning.clean` against plain pandas doing the classic steps.

The table: 1,000,000 rows x 30 numeric features (about 0.5 % of rows with a missing value,
about 1 % exact duplicate rows), a patient ID, a quality column and a label. The pandas
baseline does what a notebook would: ``dropna`` on features and label, ``drop_duplicates``
(ignoring the ID), a quality filter, and a median/MAD outlier flag per feature. It keeps no
account of what it removed; medimg's ``clean`` does, which is the cost being measured. The
copies carry their own IDs, so medimg (which never merges rows with different patient IDs)
keeps them while the baseline drops them: the kept counts differ by design.

Run: ``python benchmarks/bench_cleaning.py [--rows N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.tables.cleaning import CleaningPlan, clean
from medimg_core.tables.roles import Roles

N_FEATURES = 30
OUTLIER_Z = 5.0
ACCEPTABLE = ("good", "ok", "pass")


def build_table(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """A synthetic radiomics-like table with missing values, duplicates and quality flags."""
    rng = np.random.default_rng(seed)
    n_unique = n_rows - n_rows // 100
    features = rng.normal(size=(n_unique, N_FEATURES))
    # One missing cell in roughly 0.5 % of rows.
    holes = rng.random(n_unique) < 0.005
    features[holes, rng.integers(0, N_FEATURES, holes.sum())] = np.nan
    frame = pd.DataFrame(features, columns=[f"feature_{i:02d}" for i in range(N_FEATURES)])
    frame["diagnosis"] = rng.choice(np.array(["benign", "malignant"]), n_unique)
    frame["qc"] = rng.choice(
        np.array(["good", "ok", "pass", "bad", "motion"]), n_unique, p=[0.6, 0.2, 0.15, 0.03, 0.02]
    )
    copies = frame.iloc[rng.integers(0, n_unique, n_rows - n_unique)]
    frame = pd.concat([frame, copies], ignore_index=True)
    frame.insert(0, "case_id", np.arange(n_rows).astype(str))
    return frame


def pandas_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """The classic steps in plain pandas, the way a notebook would write them."""
    features = [c for c in df.columns if c.startswith("feature_")]
    out = df.dropna(subset=[*features, "diagnosis"])
    out = out.drop_duplicates(subset=[c for c in out.columns if c != "case_id"])
    out = out[out["qc"].str.strip().str.lower().isin(ACCEPTABLE)]
    values = out[features].to_numpy()
    median = np.median(values, axis=0)
    mad = np.median(np.abs(values - median), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        robust_z = np.abs(values - median) / (1.4826 * mad)
    out = out.assign(outlier=(robust_z > OUTLIER_Z).any(axis=1))
    return out


def best_of(repeats: int, func: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_traced_mib(func: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    df = build_table(args.rows)
    roles = Roles(label="diagnosis", id="case_id", quality="qc")
    plan = CleaningPlan(
        missing="drop", quality_column="qc", acceptable_quality=ACCEPTABLE, outlier_z=OUTLIER_Z
    )

    medimg_s, report = best_of(args.repeats, lambda: clean(df, roles, plan))
    pandas_s, baseline = best_of(args.repeats, lambda: pandas_baseline(df))
    medimg_mib = peak_traced_mib(lambda: clean(df, roles, plan))
    pandas_mib = peak_traced_mib(lambda: pandas_baseline(df))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"rows                     {len(df):>12,}  x {df.shape[1]} columns")
    print(f"table size               {df.memory_usage(deep=True).sum() / 2**20:>12.1f} MiB")
    print(f"medimg clean (best of {args.repeats}) {medimg_s:>12.2f} s")
    print(f"pandas baseline          {pandas_s:>12.2f} s")
    print(f"ratio medimg / pandas    {medimg_s / pandas_s:>12.2f}")
    print(f"peak traced, medimg      {medimg_mib:>12.1f} MiB (tracemalloc, beyond the table)")
    print(f"peak traced, pandas      {pandas_mib:>12.1f} MiB (tracemalloc, beyond the table)")
    print(f"peak RSS of the process  {rss_mib:>12.1f} MiB")
    print(f"kept medimg / pandas     {report.n_kept:>12,} / {len(baseline):,}")
    print(f"removed by rule          {report.counts}")
    print(f"flagged cells            {len(report.flags):>12,}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
