"""medimg's heavy steps on one machine and on Dask clusters of 1 and 2 workers.

Issue 10 targets, on a quiet machine with 2 cores: a throughput ratio of at least 1.7× from 1 to 2
workers, and the cluster path on one worker at most 1.3× slower than the same code in this
process. Figures are printed, never asserted; the load average is printed beside them because
the cores are shared.

* ``images``: named image features of at least 20,000 MedMNIST-style 28×28 images in an ``.npz``
  (PneumoniaMNIST from ../shared/data tiled and augmented when present, else random images):
  this process (``workers=1``, the fair baseline: the same code in one process), then a
  ``LocalCluster`` of 1 and of 2 worker processes. Cluster start-up and a warm-up run (imports
  in the workers) are timed apart from the throughput.
* ``tables``: ``medimg clean``'s partitioned path on a generated 10M-row x 21-column Parquet
  table (10 parts; 1% missing values, 0.5% repeated records placed in other parts, 2% bad
  quality): a ``LocalCluster`` of 1 and of 2 workers (rows/s, ratio, identical output), plain
  pandas ``clean`` in this process as the fair baseline when the table fits in memory, and the
  peak resident memory of this (client) process while cleaning a table larger than a third of
  the RAM (``--big-rows``).

Usage: python benchmarks/bench_distributed.py [--images 20000] [--only images|tables|all]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimg_core import compute
from medimg_core.imaging.features import FeatureTable, extract_features
from medimg_core.imaging.sets import ImageSet, open_image_set

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
WARM_UP = 256
"""Images extracted once before timing, so that worker imports are not counted as throughput."""


def load_line() -> str:
    """How busy the machine was, printed beside timings taken on shared cores."""
    return f"load average {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores"


def synthetic_npz(n: int, folder: Path, seed: int = 0) -> tuple[Path, str]:
    """A MedMNIST-layout ``.npz`` of ``n`` 28×28 images (80/10/10 train/val/test).

    PneumoniaMNIST's images are repeated with a random flip, a shift of up to 2 pixels and mild
    noise, so that no two images are identical; without the shared copy, random images.
    """
    rng = np.random.default_rng(seed)
    if NPZ.exists():
        with np.load(NPZ) as data:
            base = np.concatenate([data[f"{s}_images"] for s in ("train", "val", "test")])
            labels = np.concatenate([data[f"{s}_labels"].ravel() for s in ("train", "val", "test")])
        pick = rng.integers(0, len(base), n)
        images = base[pick].astype(np.int16)
        flip = rng.random(n) < 0.5
        images[flip] = images[flip][:, :, ::-1]
        shifts = rng.integers(-2, 3, (n, 2))
        for i, (dy, dx) in enumerate(shifts):
            images[i] = np.roll(images[i], (int(dy), int(dx)), axis=(0, 1))
        images += rng.integers(-6, 7, images.shape, dtype=np.int16)
        images = np.clip(images, 0, 255).astype(np.uint8)
        y = labels[pick]
        source = f"PneumoniaMNIST ({len(base):,} images) tiled and augmented"
    else:
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 2, n)
        source = f"random 28×28 images ({NPZ} not found)"
    cut = [0, int(n * 0.8), int(n * 0.9), n]
    arrays = {}
    for k, split in enumerate(("train", "val", "test")):
        arrays[f"{split}_images"] = images[cut[k] : cut[k + 1]]
        arrays[f"{split}_labels"] = y[cut[k] : cut[k + 1], None]
    path = folder / f"medmnist-{n}.npz"
    np.savez(path, **arrays)
    return path, source


def _timed(image_set: ImageSet, workers: int | None) -> tuple[float, float, FeatureTable]:
    """Wall seconds, CPU seconds (this process and the cluster's workers) and the table."""
    engine = compute.current()
    cpu = time.process_time() + _workers_cpu(engine)
    start = time.perf_counter()
    table = extract_features(image_set, workers=workers)
    wall = time.perf_counter() - start
    return wall, time.process_time() + _workers_cpu(engine) - cpu, table


def _workers_cpu(engine: compute.Engine) -> float:
    if not engine.distributed:
        return 0.0
    return float(sum(engine.client.run(_own_cpu).values()))


def _own_cpu() -> float:
    return time.process_time()


def bench_images(n_images: int = 20_000) -> dict[str, float]:
    """Image-feature throughput in this process and on local clusters of 1 and 2 workers.

    Returns
    -------
    dict
        Images per second: ``inline``, ``cluster_1``, ``cluster_2`` (also printed).
    """
    with tempfile.TemporaryDirectory(prefix="medimg-bench-") as tmp:
        start = time.perf_counter()
        path, source = synthetic_npz(n_images, Path(tmp))
        print(f"images: {n_images:,} of {source}, written in {time.perf_counter() - start:.1f} s")
        image_set = open_image_set(path)
        warm = open_image_set(synthetic_npz(WARM_UP, Path(tmp), seed=1)[0])
        rates: dict[str, float] = {}
        tables: dict[str, pd.DataFrame] = {}
        cpu: dict[str, float] = {}
        with compute.running_on(compute.Scheduler()):
            extract_features(warm, workers=1)
            seconds, cpu["inline"], table = _timed(image_set, 1)
        rates["inline"], tables["inline"] = n_images / seconds, table.frame
        print(
            f"  this process (workers=1): {seconds:.1f} s, {rates['inline']:,.0f} images/s, "
            f"CPU {cpu['inline']:.1f} s ({load_line()})"
        )
        for workers in (1, 2):
            start = time.perf_counter()
            with compute.running_on(compute.Scheduler(local_workers=workers)) as engine:
                started = time.perf_counter() - start
                extract_features(warm)
                key = f"cluster_{workers}"
                seconds, cpu[key], table = _timed(image_set, None)
                where = engine.describe()
            rates[key], tables[key] = n_images / seconds, table.frame
            print(
                f"  {where}: {seconds:.1f} s, {rates[key]:,.0f} images/s, CPU {cpu[key]:.1f} s "
                f"in this process and the workers (cluster start {started:.1f} s, not counted; "
                f"{load_line()})"
            )
    same = all(
        tables["inline"].equals(tables[k]) and _exact(tables["inline"], tables[k])
        for k in ("cluster_1", "cluster_2")
    )
    ratio = rates["cluster_2"] / rates["cluster_1"]
    overhead = rates["inline"] / rates["cluster_1"]
    print(
        f"  2 workers / 1 worker: {ratio:.2f}× (target >= 1.7× when the machine is quiet: "
        f"{'met' if ratio >= 1.7 else 'NOT met'})"
    )
    print(
        f"  cluster of 1 worker vs this process: {overhead:.2f}× the time (target <= 1.3×: "
        f"{'met' if overhead <= 1.3 else 'NOT met'})"
    )
    print(
        f"  CPU time of the cluster of 1 worker vs this process: "
        f"{cpu['cluster_1'] / cpu['inline']:.2f}× (less sensitive to other load than wall time)"
    )
    print(f"  feature tables identical in all three runs: {'yes' if same else 'NO'}")
    return rates


def _exact(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError:
        return False
    return True


TABLE_FEATURES = 17
CHUNK_ROWS = 1_000_000


def table_chunk(rows: int, seed: int, first_row: int) -> pd.DataFrame:
    """``rows`` rows of a 21-column imaging-feature table: a patient ID, 17 continuous
    features, a 1-5 score, a quality flag and a diagnosis; 1% of values missing, and 0.5% of
    the rows exact repeats of rows of the previous chunk (so they sit in another partition)."""
    rng = np.random.default_rng(seed)
    ids = first_row + np.arange(rows)
    features = rng.normal(50.0, 10.0, (rows, TABLE_FEATURES))
    features[rng.random(features.shape) < 0.01] = np.nan
    frame = pd.DataFrame(features, columns=[f"f{i:02d}" for i in range(TABLE_FEATURES)])
    frame.insert(0, "patient_id", pd.Series(np.char.add("P", ids.astype("U10")), dtype="str"))
    frame["score"] = rng.integers(1, 6, rows)
    quality = np.where(rng.random(rows) < 0.02, "bad", "good")
    frame["quality"] = pd.Series(quality, dtype="str")
    frame["diagnosis"] = pd.Series(
        np.where(rng.random(rows) < 0.3, "malignant", "benign"), dtype="str"
    )
    if seed > 0:
        previous = table_chunk(min(rows, 20_000), seed - 1, first_row - rows)
        repeats = rng.choice(len(previous), size=rows // 200, replace=False)
        where = rng.choice(rows, size=rows // 200, replace=False)
        frame.iloc[where] = previous.iloc[repeats].to_numpy()
        frame["score"] = frame["score"].astype("int64")
        for column in frame.columns[1 : 1 + TABLE_FEATURES]:
            frame[column] = frame[column].astype("float64")
    return frame


def write_table(folder: Path, rows: int) -> tuple[Path, int]:
    """The table as Parquet parts of ``CHUNK_ROWS`` rows; returns the folder and its in-memory
    size in bytes (pandas, deep), measured chunk by chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    for i, start in enumerate(range(0, rows, CHUNK_ROWS)):
        chunk = table_chunk(min(CHUNK_ROWS, rows - start), i, start)
        size += int(chunk.memory_usage(deep=True, index=False).sum())
        chunk.to_parquet(folder / f"part-{i:05d}.parquet", index=False, row_group_size=250_000)
    return folder, size


class PeakRSS:
    """The largest resident memory of this process while the block runs (sampled every 20 ms)."""

    def __init__(self) -> None:
        import threading

        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start = self.peak = self._process.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _clean_folder(folder: Path, out: Path) -> tuple[float, float, Any]:
    from medimg_core.tables.cleaning import CleaningPlan
    from medimg_core.tables.partitioned import clean_partitioned, open_partitioned
    from medimg_core.tables.roles import Roles

    roles = Roles(label="diagnosis", id="patient_id", quality="quality")
    start = time.perf_counter()
    table = open_partitioned(folder)
    opened = time.perf_counter() - start
    result = clean_partitioned(table, roles, CleaningPlan(quality_column="quality"), out)
    return opened, time.perf_counter() - start, result


def bench_tables(rows: int = 10_000_000, big_rows: int | None = None) -> dict[str, float]:
    """Cleaning a ``rows``-row Parquet table partition by partition on local clusters of 1 and
    2 workers, against plain pandas ``clean`` in one process; then the client's peak memory
    while cleaning a table larger than a third of the RAM (``big_rows``; 0 skips it).

    Returns
    -------
    dict
        Rows per second: ``cluster_1``, ``cluster_2``, ``pandas`` (when it fits), and the big
        run's ``peak_client_rss_gib`` and ``table_gib``.
    """
    import psutil

    from medimg_core.tables.cleaning import CleaningPlan, clean
    from medimg_core.tables.roles import Roles

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="medimg-bench-tables-") as tmp:
        start = time.perf_counter()
        folder, size = write_table(Path(tmp) / "table", rows)
        print(
            f"tables: {rows:,} rows x 21 columns ({size / 2**30:.2f} GiB in pandas), "
            f"{len(list(folder.iterdir()))} Parquet parts, written in "
            f"{time.perf_counter() - start:.0f} s"
        )
        outputs = {}
        for workers in (1, 2):
            with compute.running_on(compute.Scheduler(local_workers=workers)) as engine:
                where = engine.describe()
                opened, seconds, result = _clean_folder(folder, Path(tmp) / f"out{workers}")
            figures[f"cluster_{workers}"] = rows / seconds
            outputs[workers] = result
            print(
                f"  {where}: opened in {opened:.1f} s, opened and cleaned in {seconds:.1f} s, "
                f"{rows / seconds:,.0f} rows/s; {result.n_kept:,} kept, {result.n_removed:,} "
                f"removed {dict((k, v) for k, v in result.counts.items() if v)} ({load_line()})"
            )
        ratio = figures["cluster_2"] / figures["cluster_1"]
        print(f"  2 workers / 1 worker: {ratio:.2f}x (target >= 1.7x on a quiet machine)")
        same = pd.read_parquet(outputs[1].output_dir).equals(
            pd.read_parquet(outputs[2].output_dir)
        ) and outputs[1].removed.equals(outputs[2].removed)
        print(f"  kept and removed rows identical on 1 and 2 workers: {'yes' if same else 'NO'}")
        available = psutil.virtual_memory().available
        if available > 5 * size:
            start = time.perf_counter()
            frame = pd.read_parquet(folder)
            roles = Roles(label="diagnosis", id="patient_id", quality="quality")
            report = clean(frame, roles, CleaningPlan(quality_column="quality"))
            seconds = time.perf_counter() - start
            figures["pandas"] = rows / seconds
            print(
                f"  plain pandas clean() in this process (fair baseline, the table fits in "
                f"memory): {seconds:.1f} s, {rows / seconds:,.0f} rows/s; cluster of 1 worker "
                f"takes {figures['pandas'] / figures['cluster_1']:.2f}x its time (target <= 1.3x)"
            )
            match = report.data.reset_index(drop=True).equals(
                pd.read_parquet(outputs[1].output_dir).reset_index(drop=True)
            )
            print(
                f"  partitioned kept rows identical to pandas clean(): {'yes' if match else 'NO'}"
            )
            del frame, report
        else:
            print(
                f"  plain pandas clean(): skipped, {available / 2**30:.1f} GiB available is "
                f"under 5x the table's {size / 2**30:.1f} GiB"
            )
    if big_rows == 0:
        return figures
    ram = psutil.virtual_memory().total
    per_row = size / rows
    if big_rows is None:
        big_rows = int(max(8 * 2**30, ram / 3) / per_row * 1.05)
    with tempfile.TemporaryDirectory(prefix="medimg-bench-big-") as tmp:
        start = time.perf_counter()
        folder, big_size = write_table(Path(tmp) / "table", big_rows)
        print(
            f"big table: {big_rows:,} rows, {big_size / 2**30:.2f} GiB in pandas "
            f"({big_size / ram:.0%} of {ram / 2**30:.0f} GiB RAM), written in "
            f"{time.perf_counter() - start:.0f} s"
        )
        with compute.running_on(compute.Scheduler(local_workers=2)) as engine:
            where = engine.describe()
            with PeakRSS() as rss:
                _, seconds, result = _clean_folder(folder, Path(tmp) / "out")
        figures["peak_client_rss_gib"] = rss.peak / 2**30
        figures["table_gib"] = big_size / 2**30
        partition = big_size / max(1, big_rows // CHUNK_ROWS) / 2**30
        print(
            f"  {where}: cleaned in {seconds:.0f} s ({big_rows / seconds:,.0f} rows/s); "
            f"client RSS {rss.start / 2**30:.2f} GiB before, peak {rss.peak / 2**30:.2f} GiB "
            f"while cleaning (one partition is {partition:.2f} GiB, the table "
            f"{big_size / 2**30:.2f} GiB); {result.n_kept:,} kept, {result.n_removed:,} removed"
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=20_000, help="images for the feature benchmark"
    )
    parser.add_argument(
        "--only", choices=("images", "tables", "all"), default="all", help="which bench to run"
    )
    parser.add_argument(
        "--rows", type=int, default=10_000_000, help="rows of the table-cleaning benchmark"
    )
    parser.add_argument(
        "--big-rows",
        type=int,
        default=None,
        help="rows of the table whose cleaning is watched for the client's peak memory "
        "(default: enough for more than 8 GiB and a third of the RAM in pandas; 0 skips it)",
    )
    args = parser.parse_args(argv)
    benches: dict[str, Callable[[argparse.Namespace], object]] = {
        "images": lambda a: bench_images(a.images),
        "tables": lambda a: bench_tables(a.rows, a.big_rows),
    }
    chosen = list(benches) if args.only == "all" else [args.only]
    print(f"medimg distributed benchmarks ({load_line()})")
    for name in chosen:
        if name not in benches:
            print(f"{name}: not written yet")
            continue
        benches[name](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
