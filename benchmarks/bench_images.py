"""Image feature throughput, streaming memory and occlusion time on PneumoniaMNIST.

Targets (issue 4, on 2 cores): >= 300 images/s at 28×28 and >= 25 images/s at 256×256 with the
speed-up from 1 to 2 workers printed; peak memory for 10,000 images at 256×256 under 1 GB;
occlusion map for one 28×28 case <= 1 s.

Usage: python benchmarks/bench_images.py [--n-large 400] [--n-memory 10000]
Skips (exit 0) when ../shared/data/pneumoniamnist.npz is absent.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medimg_core.imaging.features import extract_features
from medimg_core.imaging.occlusion import model_predict_fn, occlusion_map
from medimg_core.imaging.sets import open_image_set

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"
KEY = b"benchmark-key-not-for-real-data!"


def rate(image_set, workers: int) -> float:
    start = time.perf_counter()
    table = extract_features(image_set, workers=workers)
    seconds = time.perf_counter() - start
    return len(table.frame) / seconds


def write_upsampled(images: np.ndarray, labels: np.ndarray, root: Path, n: int) -> None:
    order = np.random.default_rng(0).permutation(len(images))
    for i in range(n):
        k = int(order[i % len(images)])
        folder = root / ("pneumonia" if labels[k] else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(images[k]).resize((256, 256), Image.Resampling.BILINEAR)
        big.save(folder / f"img{i:05d}.png", compress_level=1)


def throughput(name: str, image_set, target: float) -> None:
    one = rate(image_set, 1)
    two = rate(image_set, 2)
    verdict = "meets" if two >= target else "BELOW"
    print(
        f"{name}: {len(image_set)} images: 1 worker {one:,.0f} images/s, 2 workers {two:,.0f} "
        f"images/s, speed-up {two / one:.2f}× ({verdict} the target of {target:g} images/s)"
    )


def peak_memory(root: Path) -> None:
    image_set = open_image_set(root, key=KEY)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    table = extract_features(image_set, workers=2)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # ru_maxrss of the children is that of the largest one; two workers run at once.
    total = own + 2 * child
    verdict = "meets" if total < 1024 else "ABOVE"
    print(
        f"memory: {len(table.frame):,} images at 256×256 in {seconds:.0f} s: main process peak "
        f"{own:,.0f} MB (before extraction {before:,.0f} MB), largest worker {child:,.0f} MB, "
        f"main + 2 workers <= {total:,.0f} MB ({verdict} the 1 GB target)"
    )


def occlusion_time(image_set) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    table = extract_features(image_set, workers=2)
    train = table.frame["split"] != "test"
    X = table.frame.loc[train, list(table.feature_names)]
    y = table.frame.loc[train, "label"].astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y)
    predict = model_predict_fn(model, table.settings)
    case = image_set.load(int(np.flatnonzero(~train.to_numpy())[0])).pixels
    occlusion_map(case, predict, patch=4)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        result = occlusion_map(case, predict, patch=4)
        timings.append(time.perf_counter() - start)
    best, median = min(timings), float(np.median(timings))
    verdict = "meets" if median <= 1.0 else "ABOVE"
    print(
        f"occlusion: one 28×28 case, {result.n_evaluations} images in one batch, logistic "
        f"regression over {len(table.feature_names)} features: median {median * 1000:.0f} ms, "
        f"best {best * 1000:.0f} ms ({verdict} the 1 s target)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-large", type=int, default=400, help="256×256 images for throughput")
    parser.add_argument("--n-memory", type=int, default=10_000, help="images for peak memory")
    args = parser.parse_args()
    if not NPZ.exists():
        print(f"skipped: {NPZ} not found (the benchmark needs the shared PneumoniaMNIST copy)")
        return 0
    print(f"cores available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}")
    small = open_image_set(NPZ)
    throughput("28×28 (npz)", small, 300)
    with np.load(NPZ) as data:
        images = np.concatenate([data[f"{s}_images"] for s in ("train", "val", "test")])
        labels = np.concatenate([data[f"{s}_labels"].ravel() for s in ("train", "val", "test")])
    with tempfile.TemporaryDirectory(prefix="medimg-bench-") as tmp:
        large_root = Path(tmp) / "large"
        write_upsampled(images, labels, large_root, args.n_large)
        throughput("256×256 (PNG files)", open_image_set(large_root, key=KEY), 25)
        memory_root = Path(tmp) / "memory"
        start = time.perf_counter()
        write_upsampled(images, labels, memory_root, args.n_memory)
        print(f"(wrote {args.n_memory:,} PNG files in {time.perf_counter() - start:.0f} s)")
        peak_memory(memory_root)
    occlusion_time(small)
    return 0


if __name__ == "__main__":
    sys.exit(main())
