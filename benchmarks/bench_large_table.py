"""The large-table flow of the dashboard on 1,000,000 rows x 30 columns, with the server's memory.

What the pages do for a table on the server, through the same core functions, timed:

1. Data: ``resolve_table_source`` + ``summarise_source`` (open lazily, exact column profile,
   a 50,000-row uniform sample), then ``class_counts`` of the label. This runs where heavy work
   runs (here: this process, with Dask's threaded scheduler, as a server without
   ``MEDIMG_SCHEDULER`` does), partition by partition.
2. Clean: ``clean_server_table`` submitted as a job to a ``JobManager`` (a local cluster of two
   worker processes, as the dashboard's default).
3. Train: ``train_server_table`` (gradient boosting, 3 folds, 200 bootstrap replicates) as a job;
   the run saved in this process by ``save_server_run`` (bounded cases).
4. Evaluate / Explain: the saved run reopened (model, stored cases, evaluations rebuilt from
   them) and SHAP on the sampled development cases.

A thread samples this process's resident memory (RSS) every 0.1 s: that is "the server". The job
workers are separate processes; their peak RSS is sampled too, and printed apart.

Run: ``python benchmarks/bench_large_table.py [--rows N] [--parts K]``. Prints figures; asserts
nothing. Needs several minutes and about 1 GB of disk in the temporary folder.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from medimg_core import compute
from medimg_core.access import SINGLE_USER
from medimg_core.jobs import JobKind, JobManager, JobState
from medimg_core.modelling.explain import development_explainer, development_explanation
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store import cases
from medimg_core.store.large_tables import ServerTraining, save_server_run, train_server_table
from medimg_core.store.persistence import load_model
from medimg_core.tables.cleaning import suggest_plan
from medimg_core.tables.roles import Roles
from medimg_core.tables.sources import (
    DEFAULT_SAMPLE_ROWS,
    class_counts,
    clean_server_table,
    resolve_table_source,
    summarise_source,
)

N_FEATURES = 28
MB = 2**20


class Memory:
    """Samples the RSS of this process and, apart, of its child processes (job workers)."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.server_peak = 0
        self.worker_peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.server_peak = max(self.server_peak, self.me.memory_info().rss)
            for child in self.me.children(recursive=True):
                try:
                    self.worker_peak = max(self.worker_peak, child.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(0.1)

    def reset(self) -> None:
        self.server_peak = self.me.memory_info().rss
        self.worker_peak = 0

    def now(self) -> int:
        return int(self.me.memory_info().rss)


def write_table(folder: Path, n_rows: int, n_parts: int, seed: int = 0) -> None:
    """1,000,000 x 30: a patient ID (two rows per patient), a diagnosis, 28 features with a few
    missing values, written as ``n_parts`` Parquet files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(n_rows), n_parts)):
        X = rng.normal(size=(len(rows), N_FEATURES))
        risk = X[:, 0] - 0.7 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3]
        frame = pd.DataFrame(X, columns=[f"feature_{j:02d}" for j in range(N_FEATURES)])
        frame.iloc[rng.random(len(rows)) < 0.003, 5] = np.nan
        frame["diagnosis"] = np.where(
            risk + rng.normal(scale=0.8, size=len(rows)) > 0.3, "malignant", "benign"
        )
        frame.insert(0, "patient_id", [f"P{r // 2:07d}" for r in rows])
        frame.to_parquet(folder / f"part-{i:03d}.parquet", index=False)


def job(
    manager: JobManager,
    memory: Memory,
    kind: JobKind,
    title: str,
    fn: Any,
    *args: Any,
    finish: Any = None,
) -> tuple[Any, float]:
    start = time.perf_counter()
    job_id = manager.submit(kind, SINGLE_USER, title, fn, *args, finish=finish)
    last = ""
    while True:
        state = manager.wait(job_id, timeout=5.0)
        if state.message != last:
            last = state.message
            print(f"    {time.perf_counter() - start:7.1f} s  {state.fraction:5.2f}  {last}")
        if not state.active:
            break
    if state.state is not JobState.DONE:
        sys.exit(f"{title} ended {state.state}: {state.error}")
    return state.result, time.perf_counter() - start


def _save(outcome: ServerTraining, *, home: Path, validation: ValidationConfig) -> Any:
    return save_server_run(
        SINGLE_USER,
        outcome,
        home / "models" / "bench",
        client="local",
        dataset_name="bench",
        source={"path": "bench", "format": "parquet"},
        validation=validation,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=10)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="medimg-bench-large-"))
    os.environ["MEDIMG_HOME"] = str(scratch / "home")
    os.environ.pop("MEDIMG_DATABASE_URL", None)
    memory = Memory()
    root = scratch / "data"
    start = time.perf_counter()
    write_table(root / "cohort", args.rows, args.parts)
    size = sum(f.stat().st_size for f in (root / "cohort").iterdir())
    print(
        f"table: {args.rows:,} rows x {N_FEATURES + 2} columns in {args.parts} Parquet files, "
        f"{size / MB:.0f} MB on disk (written in {time.perf_counter() - start:.1f} s)"
    )
    import gc

    gc.collect()
    baseline = memory.now()
    memory.thread.start()
    memory.reset()
    print(f"server RSS at start (libraries loaded): {baseline / MB:.0f} MB")
    figures: list[tuple[str, float, int, int]] = []

    t = time.perf_counter()
    source = resolve_table_source("cohort", (root,))
    summary = summarise_source(source, sample_size=DEFAULT_SAMPLE_ROWS, seed=0)
    counts = class_counts(summary.table, "diagnosis")
    figures.append(
        (
            "Data: open, profile, sample, class counts (this process)",
            time.perf_counter() - t,
            memory.server_peak,
            memory.worker_peak,
        )
    )
    print(f"  {summary.sample_note()}  partitions: {summary.n_partitions}; classes: {counts}")
    roles = Roles(label="diagnosis", id="patient_id")
    plan = suggest_plan(summary.sample, roles)

    manager = JobManager(compute.Scheduler(local_workers=2), idle_restart=3600)
    try:
        memory.reset()
        report, seconds = job(
            manager, memory, JobKind.CLEAN, "clean", clean_server_table, summary.table, roles, plan
        )
        figures.append(
            ("Clean: clean_server_table as a job", seconds, memory.server_peak, memory.worker_peak)
        )
        print(
            f"  rows in {report.n_input:,}, kept {report.n_kept:,}, removed "
            f"{report.n_removed:,} {report.counts}"
        )

        validation = ValidationConfig(cv=3, n_boot=200)
        memory.reset()
        saved, seconds = job(
            manager,
            memory,
            JobKind.TRAIN,
            "train",
            train_server_table,
            summary.table,
            roles,
            plan,
            ModelConfig(model="hgb"),
            validation,
            "malignant",
            finish=functools.partial(_save, home=scratch / "home", validation=validation),
        )
        figures.append(
            (
                "Train: HGB, 3 folds, 200 bootstrap, as a job; run saved here",
                seconds,
                memory.server_peak,
                memory.worker_peak,
            )
        )
        card = saved.card
        print(
            f"  cross-validated ROC AUC {card['metrics']['cv']['roc_auc']['value']:.4f}, "
            f"test ROC AUC {card['metrics']['test']['roc_auc']['value']:.4f}; cases stored "
            f"{card['cases_stored']['development']} (development), "
            f"{card['cases_stored']['test']} (test)"
        )
        del saved
    finally:
        manager.close()

    memory.reset()
    t = time.perf_counter()
    loaded = load_model(scratch / "home" / "models" / "bench")
    stored = cases.load_cases(loaded.directory)
    cv, test = cases.case_evaluations(loaded.model, stored, n_boot=200)
    assert test is not None
    development = stored[stored[cases.PARTITION] == cases.DEVELOPMENT]
    explanation = development_explanation(
        development_explainer(loaded.model, development, class_index=1), development
    )
    figures.append(
        (
            "Evaluate + Explain: run reopened, SHAP on sampled cases",
            time.perf_counter() - t,
            memory.server_peak,
            memory.worker_peak,
        )
    )
    print(
        f"  {len(stored):,} stored cases; on them: CV ROC AUC "
        f"{cv.metrics['roc_auc'].value:.4f}, test ROC AUC {test.metrics['roc_auc'].value:.4f}; "
        f"SHAP computed on {len(explanation.data):,} cases"
    )
    memory.stop.set()

    print()
    print(f"{'step':62} {'seconds':>8} {'server peak MB':>15} {'worker peak MB':>15}")
    for name, seconds, server, worker in figures:
        print(f"{name:62} {seconds:8.1f} {server / MB:15.0f} {worker / MB:15.0f}")
    peak = max(f[2] for f in figures)
    print(
        f"\nserver process: baseline {baseline / MB:.0f} MB, peak {peak / MB:.0f} MB "
        f"(+{(peak - baseline) / MB:.0f} MB) for {args.rows:,} x {N_FEATURES + 2}"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
