"""Reading volumes and segmentations: NIfTI, NRRD, DICOM series, DICOM SEG and RTSTRUCT."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import io
import random
from pathlib import Path

import highdicom as hd
import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medimg_core.errors import ImageError, LimitError
from medimg_core.imaging import volumes
from medimg_core.imaging.volumes import GeometryTolerance, Volume
from medimg_core.privacy import pseudonymise

KEY = b"test-key-0123456789abcdef0123456"
C, S = np.cos(np.pi / 6), np.sin(np.pi / 6)
OBLIQUE = (C, -S, 0.0, S, C, 0.0, 0.0, 0.0, 1.0)  # 30° about z; columns are the axes
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
CT_ORIGIN = (-158.135803, -179.035797, -75.699997)


def grid(
    array: np.ndarray | None = None,
    *,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.7),
    origin: tuple[float, float, float] = (-10.0, 20.0, 30.5),
    direction: tuple[float, ...] = IDENTITY,
    name: str = "image.nii.gz",
) -> Volume:
    if array is None:
        array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    return Volume(array, spacing, origin, direction, name)


def nifti_image(volume: Volume, dtype: type = np.float32) -> nib.Nifti1Image:
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volumes.affine(volume)
    return nib.Nifti1Image(np.transpose(volume.array, (2, 1, 0)).astype(dtype), ras)


def nifti_bytes(volume: Volume, *, gz: bool = False, dtype: type = np.float32) -> bytes:
    data = nifti_image(volume, dtype).to_bytes()
    return gzip.compress(data) if gz else data


def nrrd_bytes(
    volume: Volume, tmp_path: Path, *, space: str = "LPS", encoding: str = "gzip"
) -> bytes:
    flip = np.array([1.0, 1.0, 1.0]) if space == "LPS" else np.array([-1.0, -1.0, 1.0])
    matrix = volumes.affine(volume)
    header = {
        "space": "left-posterior-superior" if space == "LPS" else "right-anterior-superior",
        "space directions": (matrix[:3, :3] * flip[:, None]).T,
        "space origin": matrix[:3, 3] * flip,
        "encoding": encoding,
    }
    path = tmp_path / f"v-{space}-{encoding}.nrrd"
    nrrd.write(str(path), np.transpose(volume.array, (2, 1, 0)), header=header)
    return path.read_bytes()


def assert_same_grid(got: Volume, want: Volume) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got.array, want.array)
    np.testing.assert_allclose(got.spacing, want.spacing, rtol=1e-6)
    np.testing.assert_allclose(got.origin, want.origin, atol=1e-5)
    np.testing.assert_allclose(got.direction, want.direction, atol=1e-6)


@pytest.mark.parametrize("direction", [IDENTITY, OBLIQUE], ids=["axial", "oblique"])
@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_nifti_bytes_round_trip_in_lps(direction: tuple[float, ...], gz: bool) -> None:
    want = grid(direction=direction)
    got = volumes.read_volume(nifti_bytes(want, gz=gz), name="v.nii.gz" if gz else "v.nii")
    assert_same_grid(got, want)
    assert got.array.dtype == np.float32 and got.array.flags.c_contiguous
    assert got.modality is None and got.patient_key is None


def test_nifti_path_and_ras_to_lps_sign() -> None:
    # A RAS affine with identity rotation: LPS x and y axes point the other way.
    image = nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.diag([2.0, 3.0, 4.0, 1.0]))
    image.header.set_slope_inter(0.5, -100.0)
    data = image.to_bytes()
    got = volumes.read_volume(data, name="scan.nii")
    assert got.shape == (5, 4, 3)
    assert got.spacing == pytest.approx((4.0, 3.0, 2.0))
    assert got.direction == pytest.approx((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert float(got.array[0, 0, 0]) == pytest.approx(-100.0)


def test_nifti_from_tmp_path(tmp_path: Path) -> None:
    want = grid(direction=OBLIQUE)
    path = tmp_path / "v.nii.gz"
    nib.save(nifti_image(want), path)
    assert_same_grid(volumes.read_volume(path), want)
    assert volumes.read_volume(str(path)).name == "v.nii.gz"


@pytest.mark.parametrize("space", ["LPS", "RAS"])
@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_nrrd_round_trip(tmp_path: Path, space: str, encoding: str) -> None:
    want = grid(direction=OBLIQUE)
    data = nrrd_bytes(want, tmp_path, space=space, encoding=encoding)
    assert_same_grid(volumes.read_volume(data, name="v.nrrd"), want)


def test_affine_maps_indices_to_mm() -> None:
    volume = grid(direction=OBLIQUE, spacing=(3.0, 2.0, 1.0), origin=(1.0, 2.0, 3.0))
    point = volumes.affine(volume) @ [1, 0, 0, 1]  # one voxel along x: 1 mm along (C, S, 0)
    assert point[:3] == pytest.approx([1.0 + C, 2.0 + S, 3.0])
    point = volumes.affine(volume) @ [0, 0, 2, 1]  # two slices: 6 mm along z
    assert point[:3] == pytest.approx([1.0, 2.0, 9.0])


def test_geometry_text_lists_x_first() -> None:
    text = grid(
        array=np.zeros((120, 512, 256), np.float32), spacing=(2.5, 0.7, 0.7)
    ).geometry_text()
    assert text.startswith("256×512×120 voxels, spacing 0.70×0.70×2.50 mm (x×y×z), origin (")
    assert "identity" in text


def test_is_volume_file() -> None:
    assert volumes.is_volume_file("A/B.NII.GZ") and volumes.is_volume_file("x.nrrd")
    assert not volumes.is_volume_file("x.dcm") and not volumes.is_volume_file("x.nhdr")


def test_truncated_and_oversized_nifti() -> None:
    data = nifti_bytes(grid())
    with pytest.raises(ImageError, match="truncated"):
        volumes.read_volume(data[:-10], name="v.nii")
    with pytest.raises(LimitError, match="120 voxels"):
        volumes.read_volume(data, name="v.nii", max_voxels=100)
    with pytest.raises(ImageError, match="detached NRRD"):
        volumes.read_volume(b"NRRD0004\n", name="v.nhdr")


def test_four_dimensional_nifti_is_refused() -> None:
    image = nib.Nifti1Image(np.zeros((3, 4, 5, 2), np.float32), np.eye(4))
    with pytest.raises(ImageError, match="series of volumes"):
        volumes.read_volume(image.to_bytes(), name="t.nii")


def test_nrrd_detached_data_file_is_refused() -> None:
    header = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: /etc/passwd\n\n"
    with pytest.raises(ImageError, match="another file"):
        volumes.read_volume(header, name="x.nrrd")


# DICOM series built from pydicom's CT_small.dcm


def ct_series(
    n: int = 5,
    *,
    step: float = 2.5,
    skip: int | None = None,
    series: str | None = None,
    seed: int = 0,
) -> tuple[list[tuple[str, bytes]], list[Dataset]]:
    """``n`` slices ``step`` mm apart (slice ``skip`` left out), files shuffled."""
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    uid = series or generate_uid()
    files, datasets = [], []
    for k in range(n):
        if k == skip:
            continue
        ds = copy.deepcopy(base)
        z = CT_ORIGIN[2] + step * k
        ds.ImagePositionPatient = [CT_ORIGIN[0], CT_ORIGIN[1], z]
        ds.SliceLocation = z
        ds.InstanceNumber = k + 1
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PixelData = (base.pixel_array + 10 * k).astype(np.int16).tobytes()
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append((f"case/IMG{k:03d}.dcm", out.getvalue()))
        datasets.append(ds)
    random.Random(seed).shuffle(files)
    return files, datasets


def test_dicom_series_sorted_by_position_and_rescaled() -> None:
    files, _ = ct_series(5)
    volume = volumes.read_dicom_series(files, key=KEY)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert volume.shape == (5, 128, 128)
    for k in range(5):
        np.testing.assert_array_equal(volume.array[k], base.pixel_array + 10 * k - 1024.0)
    assert volume.spacing == pytest.approx((2.5, 0.661468, 0.661468))
    assert volume.origin == pytest.approx(CT_ORIGIN)
    assert volume.direction == pytest.approx(IDENTITY)
    assert volume.modality == "CT"
    assert volume.patient_key == pseudonymise(str(base.PatientID), KEY)
    assert volume.name == "case"


def test_dicom_series_keeps_no_identifying_tag() -> None:
    files, _ = ct_series(3)
    volume = volumes.read_dicom_series(files, key=KEY)
    fields = {f.name for f in dataclasses.fields(volume)}
    assert fields == {"array", "spacing", "origin", "direction", "name", "modality", "patient_key"}
    for absent in ("PatientName", "PatientID", "StudyInstanceUID", "dataset", "header"):
        assert not hasattr(volume, absent)
    assert "CompressedSamples" not in repr(volume.__dict__) and "1CT1" not in repr(volume.__dict__)


def test_dicom_series_from_paths(tmp_path: Path) -> None:
    files, _ = ct_series(3)
    paths = []
    for name, data in files:
        path = tmp_path / Path(name).name
        path.write_bytes(data)
        paths.append(path)
    volume = volumes.read_dicom_series(paths, key=KEY)
    assert volume.shape == (3, 128, 128) and volume.name == "DICOM series"


def test_dicom_series_missing_slice_names_the_gap() -> None:
    files, _ = ct_series(5, skip=2)
    with pytest.raises(ImageError, match=r"not evenly spaced: 5.00 mm between 'case/IMG001.dcm'"):
        volumes.read_dicom_series(files, key=KEY)


def test_dicom_series_duplicate_position() -> None:
    files, _ = ct_series(3, seed=1)
    with pytest.raises(ImageError, match="same position"):
        volumes.read_dicom_series([*files, (files[0][0] + "-copy", files[0][1])], key=KEY)


def test_two_series_are_listed_and_one_can_be_chosen() -> None:
    first, _ = ct_series(3, series="1.2.3.4.1")
    second, _ = ct_series(2, series="1.2.3.4.2")
    with pytest.raises(ImageError, match=r"2 series: .*3 slice\(s\).*2 slice\(s\).*series_uid"):
        volumes.read_dicom_series(first + second, key=KEY)
    chosen = volumes.read_dicom_series(first + second, key=KEY, series_uid="1.2.3.4.2")
    assert chosen.shape == (2, 128, 128)
    with pytest.raises(ImageError, match=r"no series '9\.9'"):
        volumes.read_dicom_series(first + second, key=KEY, series_uid="9.9")


def test_dicom_series_without_images() -> None:
    with pytest.raises(ImageError, match="None of the 1 DICOM file"):
        volumes.read_dicom_series([("rt.dcm", rtstruct_bytes({1: "GTV"}, []))], key=KEY)


def test_read_volume_reads_one_dicom_file_as_one_slice() -> None:
    files, _ = ct_series(1)
    volume = volumes.read_volume(files[0][1], name="one.dcm", key=KEY)
    assert volume.shape == (1, 128, 128) and volume.spacing[0] == pytest.approx(5.0)


# Masks


def test_label_volume_mask_and_label_selection() -> None:
    image = grid()
    labels = np.zeros(image.shape, np.float32)
    labels[1, 1:3, 2:4] = 1
    labels[2, 0, 0] = 2
    data = nifti_bytes(dataclasses.replace(image, array=labels), dtype=np.uint8)
    with pytest.raises(ImageError, match=r"holds 2 labels \(1, 2\); set label"):
        volumes.read_mask(data, image, name="m.nii")
    np.testing.assert_array_equal(
        volumes.read_mask(data, image, name="m.nii", label=1), labels == 1
    )
    np.testing.assert_array_equal(
        volumes.read_mask(data, image, name="m.nii", label="2"), labels == 2
    )
    with pytest.raises(ImageError, match=r"no voxel with label 3; its labels are 1, 2"):
        volumes.read_mask(data, image, name="m.nii", label=3)
    with pytest.raises(ImageError, match="must be a number, got 'GTV'"):
        volumes.read_mask(data, image, name="m.nii", label="GTV")
    single = nifti_bytes(dataclasses.replace(image, array=(labels == 1) * 255.0), dtype=np.uint8)
    np.testing.assert_array_equal(volumes.read_mask(single, image, name="m.nii"), labels == 1)


def test_probability_map_is_refused() -> None:
    image = grid()
    soft = np.full(image.shape, 0.25, np.float32)
    with pytest.raises(ImageError, match=r"non-integer values \(e.g. 0.25\)"):
        volumes.read_mask(nifti_bytes(dataclasses.replace(image, array=soft)), image, name="p.nii")


def test_nrrd_mask_on_nifti_image(tmp_path: Path) -> None:
    image = grid(direction=OBLIQUE)
    labels = np.zeros(image.shape, np.float32)
    labels[0, 2, 3] = 1
    data = nrrd_bytes(dataclasses.replace(image, array=labels), tmp_path, space="RAS")
    np.testing.assert_array_equal(volumes.read_mask(data, image, name="m.nrrd"), labels == 1)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"array": np.zeros((4, 5, 7), np.float32)}, "size differs"),
        ({"spacing": (2.5, 0.8, 0.71)}, "spacing differs"),
        ({"origin": (-10.0, 20.0, 30.6)}, "origin differs"),
        ({"direction": OBLIQUE}, "direction differs"),
        ({"spacing": (2.5, 0.9, 0.7), "origin": (-9.0, 20.0, 30.5)}, "spacing and origin differ"),
    ],
)
def test_geometry_mismatch_names_what_differs(change: dict[str, object], what: str) -> None:
    image = grid()
    mask = dataclasses.replace(image, name="mask.nii.gz", **change)
    with pytest.raises(ImageError) as caught:
        volumes.check_geometry(image, mask, GeometryTolerance())
    message = str(caught.value)
    assert what in message
    assert image.geometry_text() in message and mask.geometry_text() in message
    assert "spacing 0.001 (relative), origin 0.001 of a voxel, direction 0.0001" in message
    assert "'geometryTolerance'" in message and "--params" in message


def test_geometry_tolerance_is_respected() -> None:
    image = grid()  # x spacing 0.7 mm: origin tolerance 0.0007 mm on x
    below = dataclasses.replace(image, origin=(-10.0005, 20.0, 30.5), spacing=(2.5, 0.8, 0.7005))
    volumes.check_geometry(image, below, GeometryTolerance())
    above = dataclasses.replace(image, origin=(-10.001, 20.0, 30.5))
    with pytest.raises(ImageError, match="origin differs"):
        volumes.check_geometry(image, above, GeometryTolerance())
    volumes.check_geometry(image, above, GeometryTolerance(origin=0.01))


def test_read_mask_checks_geometry() -> None:
    image = grid()
    shifted = dataclasses.replace(
        image, array=np.ones(image.shape, np.float32), origin=(-9, 20, 30.5)
    )
    with pytest.raises(ImageError, match="origin differs"):
        volumes.read_mask(nifti_bytes(shifted), image, name="m.nii")
    mask = volumes.read_mask(
        nifti_bytes(shifted), image, name="m.nii", tolerance=GeometryTolerance(origin=2.0)
    )
    assert mask.all()


def segment(number: int, label: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=hd.sr.CodedConcept(
            "49755003", "SCT", "Morphologic abnormality"
        ),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def seg_bytes(datasets: list[Dataset], mask: np.ndarray, labels: list[str]) -> bytes:
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment(i + 1, t) for i, t in enumerate(labels)],
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medimg tests",
        manufacturer_model_name="synthetic",
        software_versions="1",
        device_serial_number="1",
    )
    out = io.BytesIO()
    seg.save_as(out)
    return out.getvalue()


def test_dicom_seg_read_back_on_the_series_grid() -> None:
    files, datasets = ct_series(4)
    volume = volumes.read_dicom_series(files, key=KEY)
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    tumour = np.zeros((4, 128, 128), bool)
    tumour[1:3, 10:20, 30:45] = True
    liver = np.zeros((4, 128, 128), bool)
    liver[3, 60:70, 60:64] = True
    data = seg_bytes(datasets, np.stack([tumour, liver], axis=-1), ["Tumour", "Liver"])
    np.testing.assert_array_equal(volumes.read_mask(data, volume, name="s.dcm", label=1), tumour)
    np.testing.assert_array_equal(
        volumes.read_mask(data, volume, name="s.dcm", label="liver"), liver
    )
    with pytest.raises(ImageError, match=r"holds 2 segments \(1 'Tumour', 2 'Liver'\); set label"):
        volumes.read_mask(data, volume, name="s.dcm")
    with pytest.raises(ImageError, match="no segment '7'"):
        volumes.read_mask(data, volume, name="s.dcm", label=7)


@pytest.mark.parametrize("kind", ["LABELMAP", "FRACTIONAL"])
def test_labelmap_and_fractional_seg(kind: str) -> None:
    files, datasets = ct_series(4)
    volume = volumes.read_dicom_series(files, key=KEY)
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    labels = np.zeros((4, 128, 128), np.uint8)
    labels[1, 5:9, 5:9] = 1
    labels[2, 50:60, 70:80] = 2
    pixels = labels
    if kind == "FRACTIONAL":  # 0.9 and 0.3: only the first is above one half
        pixels = np.stack([(labels == 1) * 0.9, (labels == 2) * 0.3], axis=-1).astype(np.float32)
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixels,
        segmentation_type=kind,
        segment_descriptions=[segment(1, "A"), segment(2, "B")],
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medimg tests",
        manufacturer_model_name="synthetic",
        software_versions="1",
        device_serial_number="1",
    )
    out = io.BytesIO()
    seg.save_as(out)
    first = volumes.read_mask(out.getvalue(), volume, name="s.dcm", label=1)
    second = volumes.read_mask(out.getvalue(), volume, name="s.dcm", label="B")
    np.testing.assert_array_equal(first, labels == 1)
    np.testing.assert_array_equal(second, labels == 2 if kind == "LABELMAP" else False)


def test_dicom_seg_on_another_grid_is_refused() -> None:
    files, datasets = ct_series(4)
    volume = volumes.read_dicom_series(files, key=KEY)
    tumour = np.zeros((4, 128, 128), bool)
    tumour[1, 10:20, 30:45] = True
    data = seg_bytes(datasets, tumour, ["Tumour"])
    moved = dataclasses.replace(volume, origin=(CT_ORIGIN[0] + 0.3, CT_ORIGIN[1], CT_ORIGIN[2]))
    with pytest.raises(ImageError, match="between the voxels"):
        volumes.read_mask(data, moved, name="s.dcm")
    finer = dataclasses.replace(volume, spacing=(2.5, 0.5, 0.5))
    with pytest.raises(ImageError, match="not on the pixel grid"):
        volumes.read_mask(data, finer, name="s.dcm")


def rtstruct_bytes(rois: dict[int, str], contours: list[tuple[int, np.ndarray]]) -> bytes:
    """An RTSTRUCT with ``rois`` (number -> name) and closed contours (roi, LPS points)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID = "1CT1"
    ds.PatientName = "CompressedSamples^CT1"
    rois_seq = []
    for number, name in rois.items():
        item = Dataset()
        item.ROINumber = number
        item.ROIName = name
        rois_seq.append(item)
    ds.StructureSetROISequence = Sequence(rois_seq)
    by_roi: dict[int, list[Dataset]] = {}
    for roi, points in contours:
        contour = Dataset()
        contour.ContourGeometricType = "CLOSED_PLANAR"
        contour.NumberOfContourPoints = len(points)
        contour.ContourData = [f"{v:.6f}" for v in points.ravel()]
        by_roi.setdefault(roi, []).append(contour)
    roi_contours = []
    for roi, items in by_roi.items():
        entry = Dataset()
        entry.ReferencedROINumber = roi
        entry.ContourSequence = Sequence(items)
        roi_contours.append(entry)
    ds.ROIContourSequence = Sequence(roi_contours)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def square(volume: Volume, z: int, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """The LPS corners of a square given in (fractional) voxel indices on slice ``z``."""
    corners = np.array([[x0, y0, z, 1], [x1, y0, z, 1], [x1, y1, z, 1], [x0, y1, z, 1]], float)
    return (corners @ volumes.affine(volume).T)[:, :3]


@pytest.mark.parametrize("direction", [IDENTITY, OBLIQUE], ids=["axial", "oblique"])
def test_rtstruct_rasterised_with_holes(direction: tuple[float, ...]) -> None:
    image = grid(array=np.zeros((4, 30, 40), np.float32), direction=direction)
    contours = [
        (1, square(image, 1, 9.5, 19.5, 4.5, 14.5)),
        (1, square(image, 2, 9.5, 19.5, 4.5, 14.5)),
        (1, square(image, 2, 12.5, 15.5, 7.5, 10.5)),  # a hole (even-odd rule)
        (2, square(image, 0, 0.5, 3.5, 0.5, 3.5)),
    ]
    data = rtstruct_bytes({1: "GTV", 2: "Lung"}, contours)
    want = np.zeros(image.shape, bool)
    want[1:3, 5:15, 10:20] = True
    want[2, 8:11, 13:16] = False
    np.testing.assert_array_equal(volumes.read_mask(data, image, name="rt.dcm", label="GTV"), want)
    np.testing.assert_array_equal(volumes.read_mask(data, image, name="rt.dcm", label=1), want)
    lung = volumes.read_mask(data, image, name="rt.dcm", label=2)
    assert lung.sum() == 9 and lung[0, 1:4, 1:4].all()
    with pytest.raises(ImageError, match=r"holds 2 ROIs \(1 'GTV', 2 'Lung'\); set label"):
        volumes.read_mask(data, image, name="rt.dcm")
    with pytest.raises(ImageError, match="no ROI 'Heart'"):
        volumes.read_mask(data, image, name="rt.dcm", label="Heart")


def test_rtstruct_contour_between_slices_is_refused() -> None:
    image = grid(array=np.zeros((4, 30, 40), np.float32))
    data = rtstruct_bytes(
        {1: "GTV"}, [(1, square(image, 1, 2.5, 5.5, 2.5, 5.5) + np.array([0, 0, 1.0]))]
    )
    with pytest.raises(ImageError, match="does not lie on a slice"):
        volumes.read_mask(data, image, name="rt.dcm")


def test_other_dicom_is_not_a_mask() -> None:
    files, _ = ct_series(1)
    with pytest.raises(ImageError, match="DICOM CT, not a segmentation"):
        volumes.read_mask(files[0][1], grid(), name="ct.dcm")


NAMES = st.sampled_from(["x.nii", "x.nii.gz", "x.nrrd", "x.dcm", "upload"])
VALID = nifti_bytes(grid())


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=1024), name=NAMES)
def test_arbitrary_bytes_raise_image_error(data: bytes, name: str) -> None:
    with pytest.raises(ImageError):
        volumes.read_volume(data, name=name, key=KEY)
    with pytest.raises(ImageError):
        volumes.read_mask(data, grid(), name=name)


@settings(max_examples=60, deadline=None)
@given(
    cut=st.integers(0, len(VALID)),
    flips=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), max_size=4),
    gz=st.booleans(),
)
def test_damaged_nifti_raises_image_error_or_reads(
    cut: int, flips: list[tuple[int, int]], gz: bool
) -> None:
    data = bytearray(VALID)
    for at, value in flips:
        data[at] = value
    damaged = bytes(data[:cut])
    damaged = gzip.compress(damaged) if gz else damaged
    try:
        volume = volumes.read_volume(damaged, name="x.nii.gz" if gz else "x.nii", max_voxels=10**6)
    except (ImageError, LimitError):
        return
    assert volume.array.ndim == 3
