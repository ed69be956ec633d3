"""Synthetic images, archives and a small model trained on textures, shared by the image tests."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medimg_core.imaging.feature_table import ImageTable, image_table
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store.persistence import save_model

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
"""pydicom's CT test file, with patient tags to de-identify."""
FAST = ModelConfig(model="logreg")
VALIDATION = ValidationConfig(cv=3, n_boot=50)


def gradient(h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    """A left-to-right ramp with noise, 8-bit."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, w)[None, :] + np.zeros((h, 1))
    return np.clip(base + rng.integers(0, 50, (h, w)), 0, 255).astype(np.uint8)


def save(path: Path, array: np.ndarray, fmt: str | None = None) -> Path:
    """Write ``array`` as an image file (format from the suffix unless ``fmt``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def png_bytes(array: np.ndarray) -> bytes:
    """``array`` encoded as PNG."""
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated ZIP archive of ``{name: bytes}``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def texture(kind: str, seed: int, size: int = 16) -> np.ndarray:
    """Smooth blocky shading ("normal") or fine-grained speckle ("pneumonia")."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(90, 160)
    if kind == "normal":
        coarse = rng.normal(0, 25, (size // 4, size // 4))
        values = level + np.kron(coarse, np.ones((4, 4)))
    else:
        values = level + rng.normal(0, 35, (size, size))
    return np.clip(values, 0, 255).astype(np.uint8)


def image_folder(root: Path, n: int = 12, seed: int = 0, size: int = 16) -> Path:
    for k, kind in enumerate(("normal", "pneumonia")):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = texture(kind, seed + 100 * k + i, size)
            Image.fromarray(img).save(folder / f"{kind}_{i:02d}.png")
    return root


@dataclass(frozen=True)
class Trained:
    table: ImageTable
    result: TrainingResult
    model_dir: Path
    root: Path


def trained_on_textures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """A logistic model trained and saved on 2 × 12 texture images (for module fixtures)."""
    base = tmp_path_factory.mktemp("imaging")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        table = image_table(image_folder(base / "train"), workers=1)
        result = train(table.frame, table.roles(), config=FAST, validation=VALIDATION)
        model_dir = save_model(
            result,
            base / "model",
            dataset_name="textures",
            validation=VALIDATION,
            image_settings=table.settings,
        )
        yield Trained(table, result, model_dir, base)
