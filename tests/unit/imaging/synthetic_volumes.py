"""Small synthetic 3D studies for tests: CT-like volumes with a lesion and its segmentation.

Two classes differ the way a radiomics model can learn: "benign" lesions are smaller, round and
homogeneous; "malignant" ones larger, lobulated and heterogeneous. Everything is generated from
a seed (nothing large is committed), written as NIfTI with nibabel.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (20, 32, 32)
"""(z, y, x) voxels of every synthetic volume."""
SPACING = (2.0, 1.0, 1.0)
"""(z, y, x) mm: thicker slices than pixels, as in most CT."""


def lesion_case(
    rng: np.random.Generator, label: str, shape: tuple[int, int, int] = SHAPE
) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like volume (HU, int16) with one lesion, and the lesion's mask (uint8)."""
    z, y, x = np.indices(shape, dtype=np.float64)
    cz, cy, cx = (np.array(shape) - 1) / 2 + rng.uniform(-1.5, 1.5, 3)
    radius = rng.uniform(5.0, 6.5) if label == "benign" else rng.uniform(7.5, 9.5)
    # Distance in mm, so the lesion is round in space although slices are 2 mm thick.
    dist = np.sqrt(((z - cz) * SPACING[0]) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
    if label != "benign":
        angle = np.arctan2(y - cy, x - cx)
        dist = dist * (1 + 0.18 * np.sin(4 * angle + rng.uniform(0, np.pi)))
    mask = dist <= radius
    image = rng.normal(-50.0, 12.0, shape)  # fat-like surroundings
    texture = 15.0 if label == "benign" else 55.0
    image[mask] = rng.normal(40.0 if label == "benign" else 70.0, texture, int(mask.sum()))
    return np.round(image).astype(np.int16), mask.astype(np.uint8)


def nifti_bytes(array: np.ndarray, spacing: tuple[float, float, float] = SPACING) -> bytes:
    """A ``(z, y, x)`` array as gzipped NIfTI bytes with the given (z, y, x) spacing."""
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(array, (2, 1, 0))), affine)
    raw = img.to_bytes()
    buffer = io.BytesIO()
    import gzip

    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return buffer.getvalue()


def study_files(
    n_per_class: int = 6, *, seed: int = 0, labelled: bool = True, manifest: bool = False
) -> dict[str, bytes]:
    """Relative path -> bytes of a study: folders by class with masks/, or a manifest."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    rows = ["case,image,mask,label,patient_id"]
    for label in ("benign", "malignant"):
        for i in range(n_per_class):
            image, mask = lesion_case(rng, label)
            case = f"{label[:3]}{i:02d}"
            if manifest:
                files[f"images/{case}.nii.gz"] = nifti_bytes(image)
                files[f"segmentations/{case}_seg.nii.gz"] = nifti_bytes(mask)
                rows.append(
                    f"{case},images/{case}.nii.gz,segmentations/{case}_seg.nii.gz,"
                    f"{label if labelled else ''},P{i:03d}{label[0]}"
                )
            else:
                # Unlabelled cases sit at the top level, without class folders.
                folder = f"{label}/" if labelled else ""
                files[f"{folder}{case}.nii.gz"] = nifti_bytes(image)
                files[f"masks/{folder}{case}.nii.gz"] = nifti_bytes(mask)
    if manifest:
        files["manifest.csv"] = ("\n".join(rows) + "\n").encode()
    return files


def study_zip(n_per_class: int = 6, *, seed: int = 0, **kwargs: bool) -> bytes:
    """:func:`study_files` as the bytes of a ZIP archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in study_files(n_per_class, seed=seed, **kwargs).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def write_study(root: Path, n_per_class: int = 6, *, seed: int = 0, **kwargs: bool) -> Path:
    """:func:`study_files` written under ``root``; returns ``root``."""
    for name, data in study_files(n_per_class, seed=seed, **kwargs).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
