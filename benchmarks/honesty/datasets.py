"""Mimic data sets for the issue-8 honesty benchmark: seeded, written to a folder, no network.

Each builder reproduces the *structure* that makes a public data set a trap for naive cleaning or
naive reporting (not its exact values):

- ``wisconsin_original.csv``: UCI Breast Cancer Wisconsin (Original). 699 biopsies of 691
  patients (8 true repeated records: same ``id``, same values), nine cytology scores 1-10,
  ``bare_nuclei`` missing ("?") in 16 rows, ``class`` 2 = benign (458) / 4 = malignant (241).
  Benign scores are low and coarse, so many *different* patients share identical rows: a rule
  that removes rows identical on everything but the ID removes about 234 rows, about 231 benign.
- ``mammographic.csv``: UCI Mammographic Mass. 961 masses, ``bi_rads`` (the reader's own
  assessment), ``age``, ``shape``, ``margin``, ``density``, ``severity`` (1 = malignant, about
  46 %), some "?" values. Coarse codes give many identical feature rows with opposite labels:
  the hard cases a "conflicting duplicate" rule would remove (about 150 rows).
- ``breastmnist_like.npz``: BreastMNIST layout (546 / 78 / 156 images, 28x28 uint8, labels of
  shape (n, 1)) coded 0 = malignant (about 27 %), 1 = benign, with one test image
  pixel-identical to a training image of the opposite label. Built from the shared
  PneumoniaMNIST copy (pneumonia images stand in for malignant) when present, else from
  synthetic textures.
- ``no_signal.csv``: 300 rows, 10 random features, a random 0/1 ``outcome``: any AUC away from
  0.5 is optimism.

Usage: ``python benchmarks/honesty/datasets.py OUT_DIR`` (or ``build_all(OUT_DIR)``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "PNEUMONIA_NPZ",
    "SCORES",
    "breastmnist_like",
    "build_all",
    "mammographic",
    "no_signal",
    "wisconsin_original",
]

PNEUMONIA_NPZ = Path(__file__).resolve().parents[3] / "shared" / "data" / "pneumoniamnist.npz"

SCORES = (
    "clump_thickness",
    "cell_size_uniformity",
    "cell_shape_uniformity",
    "marginal_adhesion",
    "epithelial_cell_size",
    "bare_nuclei",
    "bland_chromatin",
    "normal_nucleoli",
    "mitoses",
)

# Per-score distributions over 1..10 (index 0 = score 1), roughly as in the UCI table.
_BENIGN_SCORE_P = {
    "clump_thickness": [0.29, 0.09, 0.23, 0.15, 0.18, 0.03, 0.01, 0.01, 0.005, 0.005],
    "cell_size_uniformity": [0.82, 0.08, 0.05, 0.03, 0.01, 0.005, 0.005, 0, 0, 0],
    "cell_shape_uniformity": [0.76, 0.12, 0.07, 0.03, 0.01, 0.005, 0.005, 0, 0, 0],
    "marginal_adhesion": [0.81, 0.08, 0.06, 0.03, 0.01, 0.005, 0.005, 0, 0, 0],
    "epithelial_cell_size": [0.05, 0.82, 0.08, 0.03, 0.01, 0.005, 0.005, 0, 0, 0],
    "bare_nuclei": [0.85, 0.05, 0.03, 0.02, 0.02, 0.005, 0.005, 0.005, 0.005, 0.01],
    "bland_chromatin": [0.33, 0.35, 0.28, 0.02, 0.01, 0.005, 0.005, 0, 0, 0],
    "normal_nucleoli": [0.87, 0.06, 0.04, 0.01, 0.01, 0.005, 0.005, 0, 0, 0],
    "mitoses": [0.98, 0.01, 0.005, 0.005, 0, 0, 0, 0, 0, 0],
}
_MALIGNANT_SCORE_P = {
    "clump_thickness": [0.01, 0.01, 0.04, 0.05, 0.12, 0.07, 0.09, 0.17, 0.06, 0.38],
    "cell_size_uniformity": [0.02, 0.04, 0.11, 0.12, 0.11, 0.1, 0.07, 0.11, 0.05, 0.27],
    "cell_shape_uniformity": [0.02, 0.04, 0.1, 0.12, 0.11, 0.12, 0.1, 0.11, 0.04, 0.24],
    "marginal_adhesion": [0.12, 0.07, 0.1, 0.1, 0.09, 0.08, 0.05, 0.09, 0.02, 0.28],
    "epithelial_cell_size": [0.01, 0.08, 0.14, 0.14, 0.13, 0.17, 0.05, 0.08, 0.01, 0.19],
    "bare_nuclei": [0.04, 0.03, 0.06, 0.07, 0.1, 0.02, 0.03, 0.09, 0.04, 0.52],
    "bland_chromatin": [0.01, 0.03, 0.15, 0.13, 0.1, 0.04, 0.3, 0.1, 0.02, 0.12],
    "normal_nucleoli": [0.12, 0.07, 0.1, 0.05, 0.06, 0.07, 0.07, 0.09, 0.06, 0.31],
    "mitoses": [0.54, 0.09, 0.12, 0.05, 0.03, 0.01, 0.04, 0.03, 0.01, 0.08],
}


def _normalised(p: list[float]) -> np.ndarray:
    a = np.asarray(p, dtype=float)
    return a / a.sum()


ATYPICAL_SHARE = 0.025
"""Share of each class drawn from the other class's score distributions (the overlap that
keeps the real table's AUC near 0.99 rather than 1)."""


def _draw_scores(rng: np.random.Generator, table: dict[str, list[float]]) -> tuple[int, ...]:
    if rng.random() < ATYPICAL_SHARE:
        table = _MALIGNANT_SCORE_P if table is _BENIGN_SCORE_P else _BENIGN_SCORE_P
    return tuple(int(rng.choice(10, p=_normalised(table[c]))) + 1 for c in SCORES)


def _pattern_probability(pattern: tuple[int, ...], table: dict[str, list[float]]) -> float:
    other = _MALIGNANT_SCORE_P if table is _BENIGN_SCORE_P else _BENIGN_SCORE_P
    return sum(
        share
        * float(np.prod([_normalised(t[c])[v - 1] for c, v in zip(SCORES, pattern, strict=True)]))
        for t, share in ((table, 1 - ATYPICAL_SHARE), (other, ATYPICAL_SHARE))
    )


def wisconsin_original(out_dir: Path, seed: int = 8) -> Path:
    """Write ``wisconsin_original.csv`` (699 rows) and return its path.

    Exact structure: 691 distinct patients (450 benign, 241 malignant) plus 8 true repeated
    benign records; 14 benign and 2 malignant rows miss ``bare_nuclei``; one benign and one
    malignant patient share all nine scores; the other 435 benign patients with complete scores
    share 227 distinct score patterns (a different-patient "duplicate" rule removes 208 of
    them), while every malignant pattern is unique. A rule removing rows identical on every
    column except the ID therefore removes 16 + 2 + 8 + 208 = 234 rows, 231 of them benign.
    """
    rng = np.random.default_rng(seed)
    n_benign, n_malignant, n_repeats = 450, 241, 8
    n_missing_benign, n_missing_malignant = 14, 2
    n_benign_patterns, n_benign_complete = 227, n_benign - n_missing_benign - 1

    conflict = (5, 3, 3, 3, 2, 3, 4, 4, 1)
    malignant: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = {conflict}
    while len(malignant) < n_malignant - 1 - n_missing_malignant:
        pattern = _draw_scores(rng, _MALIGNANT_SCORE_P)
        if pattern not in seen:
            seen.add(pattern)
            malignant.append(pattern)
    benign_patterns: list[tuple[int, ...]] = []
    while len(benign_patterns) < n_benign_patterns:
        pattern = _draw_scores(rng, _BENIGN_SCORE_P)
        if pattern not in seen:
            seen.add(pattern)
            benign_patterns.append(pattern)
    # Extra patients on the same patterns, as often as each pattern is likely.
    weights = np.array([_pattern_probability(p, _BENIGN_SCORE_P) for p in benign_patterns])
    extra = rng.choice(
        len(benign_patterns), size=n_benign_complete - n_benign_patterns, p=weights / weights.sum()
    )
    benign = benign_patterns + [benign_patterns[i] for i in extra]
    benign_missing = [_draw_scores(rng, _BENIGN_SCORE_P) for _ in range(n_missing_benign)]
    malignant_missing = [_draw_scores(rng, _MALIGNANT_SCORE_P) for _ in range(n_missing_malignant)]

    rows: list[dict[str, object]] = []

    def add(pattern: tuple[int, ...], cls: int, missing: bool = False) -> None:
        row: dict[str, object] = dict(zip(SCORES, pattern, strict=True))
        if missing:
            row["bare_nuclei"] = "?"
        row["class"] = cls
        rows.append(row)

    for p in benign:
        add(p, 2)
    add(conflict, 2)
    for p in benign_missing:
        add(p, 2, missing=True)
    for p in malignant:
        add(p, 4)
    add(conflict, 4)
    for p in malignant_missing:
        add(p, 4, missing=True)
    frame = pd.DataFrame(rows)
    ids = rng.choice(np.arange(61_634, 1_371_026), size=len(frame), replace=False)
    frame.insert(0, "id", ids)
    # True repeats: the same biopsy record entered twice (complete benign rows only).
    repeated = frame.iloc[rng.choice(n_benign_complete, size=n_repeats, replace=False)]
    frame = pd.concat([frame, repeated], ignore_index=True)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    assert len(frame) == 699 and frame["id"].nunique() == 691
    path = out_dir / "wisconsin_original.csv"
    frame.to_csv(path, index=False)
    return path


HARD_SHARE = 0.2
HARD_AGE_SD = 8.0


def mammographic(out_dir: Path, seed: int = 8) -> Path:
    """Write ``mammographic.csv`` (961 rows) and return its path.

    Severity comes from a logistic model on BI-RADS, age, shape and margin with a large
    unexplained part, so common coarse profiles (BI-RADS 4, irregular shape, ill-defined
    margin, density 3, similar ages) hold masses of both outcomes. Ages are drawn in 5-year
    bands then jittered by at most a few years, as in the UCI table where many ages repeat.
    """
    rng = np.random.default_rng(seed)
    n = 961
    severity = (rng.random(n) < 0.463).astype(int)
    malignant = severity == 1
    shape = np.where(
        malignant,
        rng.choice([1, 2, 3, 4], size=n, p=[0.08, 0.08, 0.12, 0.72]),
        rng.choice([1, 2, 3, 4], size=n, p=[0.38, 0.36, 0.08, 0.18]),
    )
    margin = np.where(
        malignant,
        rng.choice([1, 2, 3, 4, 5], size=n, p=[0.09, 0.02, 0.14, 0.45, 0.30]),
        rng.choice([1, 2, 3, 4, 5], size=n, p=[0.60, 0.03, 0.10, 0.20, 0.07]),
    )
    bi_rads = np.where(
        malignant,
        rng.choice([1, 2, 3, 4, 5], size=n, p=[0.0, 0.01, 0.02, 0.35, 0.62]),
        rng.choice([1, 2, 3, 4, 5], size=n, p=[0.01, 0.03, 0.06, 0.78, 0.12]),
    )
    density = rng.choice([1, 2, 3, 4], size=n, p=[0.02, 0.06, 0.88, 0.04])
    age = np.clip(np.round(np.where(malignant, 62.0, 51.0) + rng.normal(0, 13, size=n)), 18, 96)
    # Indeterminate masses: one shared profile whatever the outcome (the hard cases).
    hard = rng.random(n) < HARD_SHARE
    n_hard = int(hard.sum())
    bi_rads[hard] = rng.choice([4, 5], size=n_hard, p=[0.85, 0.15])
    shape[hard] = rng.choice([2, 3, 4], size=n_hard, p=[0.2, 0.2, 0.6])
    margin[hard] = rng.choice([1, 3, 4], size=n_hard, p=[0.25, 0.25, 0.5])
    density[hard] = rng.choice([2, 3], size=n_hard, p=[0.05, 0.95])
    age[hard] = np.clip(np.round(rng.normal(58, HARD_AGE_SD, size=n_hard)), 18, 96)
    frame = pd.DataFrame(
        {
            "bi_rads": bi_rads,
            "age": age.astype(int),
            "shape": shape,
            "margin": margin,
            "density": density,
            "severity": severity,
        }
    ).astype(object)
    for column, n_missing in (
        ("bi_rads", 2),
        ("age", 5),
        ("shape", 31),
        ("margin", 48),
        ("density", 76),
    ):
        frame.loc[rng.choice(n, size=n_missing, replace=False), column] = "?"
    path = out_dir / "mammographic.csv"
    frame.to_csv(path, index=False)
    return path


def _synthetic_images(rng: np.random.Generator, n: int, malignant: bool) -> np.ndarray:
    """28x28 uint8 masses: round and smooth (benign) or irregular and textured (malignant)."""
    yy, xx = np.mgrid[0:28, 0:28].astype(float)
    images = np.empty((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.normal(14, 2, size=2)
        radius = rng.uniform(5, 9)
        angle = np.arctan2(yy - cy, xx - cx)
        wobble = 0.05 + (0.25 if malignant else 0.08) * rng.random()
        lobes = rng.integers(3, 9)
        edge = radius * (1 + wobble * np.sin(lobes * angle + rng.uniform(0, 2 * np.pi)))
        dist = np.hypot(yy - cy, xx - cx)
        mass = 1 / (1 + np.exp((dist - edge) / (0.6 if malignant else 1.2)))
        texture = rng.normal(0, 0.25 if malignant else 0.12, size=(28, 28))
        image = 0.25 + 0.5 * mass + texture * mass + rng.normal(0, 0.08, size=(28, 28))
        images[i] = np.clip(image * 255, 0, 255).astype(np.uint8)
    return images


def breastmnist_like(out_dir: Path, seed: int = 8, source: Path | None = PNEUMONIA_NPZ) -> Path:
    """Write ``breastmnist_like.npz`` (546 / 78 / 156 images) and return its path.

    Label 0 = malignant (147 / 21 / 42 images), 1 = benign. The first malignant test image
    is replaced by a copy of a benign training image (its label stays malignant): one
    pixel-identical pair across the split with opposite labels, as in BreastMNIST.
    """
    rng = np.random.default_rng(seed)
    sizes = {"train": (147, 399), "val": (21, 57), "test": (42, 114)}
    arrays: dict[str, np.ndarray] = {}
    pool = np.load(source) if source is not None and Path(source).is_file() else None
    for split, (n_mal, n_ben) in sizes.items():
        if pool is not None:
            images, labels = pool[f"{split}_images"], pool[f"{split}_labels"].ravel()
            mal = images[rng.choice(np.flatnonzero(labels == 1), size=n_mal, replace=False)]
            ben = images[rng.choice(np.flatnonzero(labels == 0), size=n_ben, replace=False)]
        else:
            mal = _synthetic_images(rng, n_mal, malignant=True)
            ben = _synthetic_images(rng, n_ben, malignant=False)
        x = np.concatenate([mal, ben]).astype(np.uint8)
        y = np.concatenate([np.zeros(n_mal), np.ones(n_ben)]).astype(np.uint8).reshape(-1, 1)
        order = rng.permutation(len(x))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x[order], y[order]
    benign_train = np.flatnonzero(arrays["train_labels"].ravel() == 1)
    malignant_test = np.flatnonzero(arrays["test_labels"].ravel() == 0)
    arrays["test_images"][malignant_test[0]] = arrays["train_images"][benign_train[0]]
    path = out_dir / "breastmnist_like.npz"
    np.savez_compressed(path, **arrays)
    return path


def no_signal(out_dir: Path, seed: int = 8, name: str = "no_signal.csv") -> Path:
    """Write a 300-row table of 10 standard-normal features and a coin-flip ``outcome``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal(size=(300, 10)).round(4), columns=[f"x{i:02d}" for i in range(1, 11)]
    )
    frame["outcome"] = rng.integers(0, 2, size=300)
    path = out_dir / name
    frame.to_csv(path, index=False)
    return path


def build_all(out_dir: str | Path, seed: int = 8) -> dict[str, Path]:
    """Build every mimic into ``out_dir`` (created if needed); name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "wisconsin_original": wisconsin_original(out, seed),
        "mammographic": mammographic(out, seed),
        "breastmnist_like": breastmnist_like(out, seed),
        "no_signal": no_signal(out, seed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    for name, path in build_all(args.out_dir, args.seed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
