"""DICOM reading and de-identification (PS3.15 Basic Profile) on pydicom's bundled files."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medimg_core.errors import ImageError, LimitError
from medimg_core.imaging import dicom
from medimg_core.privacy import pseudonymise

KEY = b"test-key-0123456789abcdef0123456"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "dicom-deidentification.md"


def ct_path() -> str:
    return str(get_testdata_file("CT_small.dcm"))


def identifying_values(ds: Dataset) -> set[str]:
    """Every identifying value of the original file that must not survive."""
    values = {
        str(ds.PatientName),
        str(ds.PatientID),
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
    }
    for keyword in (
        "InstitutionName",
        "StationName",
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "StudyTime",
        "SeriesTime",
        "AcquisitionTime",
        "ContentTime",
        "InstanceCreationDate",
        "FrameOfReferenceUID",
        "StudyID",
        "AccessionNumber",
    ):
        value = str(ds.get(keyword, "") or "")
        if len(value) >= 4:
            values.add(value)
    if "OtherPatientIDsSequence" in ds:
        values.update(str(item.PatientID) for item in ds.OtherPatientIDsSequence)
    return values


def all_text(ds: Dataset) -> str:
    parts: list[str] = []
    ds.walk(lambda _ds, elem: parts.append(f"{elem.keyword}={elem.value!r}"))
    if getattr(ds, "file_meta", None) is not None:
        parts.extend(f"{e.keyword}={e.value!r}" for e in ds.file_meta)
    return "\n".join(parts)


def test_deidentify_removes_every_identifying_value_of_ct_small() -> None:
    ds = pydicom.dcmread(ct_path())
    secrets = identifying_values(ds)
    assert "CompressedSamples^CT1" in secrets and "ABCD1234" in secrets
    key = dicom.deidentify_dataset(ds, key=KEY)
    text = all_text(ds)
    for secret in secrets:
        assert secret not in text, secret
    assert key == pseudonymise("1CT1", KEY)
    assert ds.PatientID == key
    assert ds.PatientName == ""
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == dicom.DEIDENTIFICATION_METHOD
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert "InstitutionName" not in ds and "StationName" not in ds
    assert ds.StudyDate == "" and "SeriesDate" not in ds
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # standard UIDs stay


def test_uids_are_replaced_consistently_under_the_2_25_root() -> None:
    a = pydicom.dcmread(ct_path())
    b = pydicom.dcmread(ct_path())
    original = str(a.SOPInstanceUID)
    dicom.deidentify_dataset(a, key=KEY)
    dicom.deidentify_dataset(b, key=KEY)
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert str(a.SOPInstanceUID).startswith("2.25.")
    assert len(str(a.SOPInstanceUID)) <= 64
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert dicom.pseudonymous_uid(original, KEY) == a.SOPInstanceUID
    assert dicom.pseudonymous_uid(original, b"another key") != a.SOPInstanceUID


def crafted_dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-998877"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAddress = "1 Main Street"
    ds.PatientTelephoneNumbers = "555-0100"
    ds.OperatorsName = "Tech^Tom"
    ds.PerformingPhysicianName = "Dr^House"
    ds.InstitutionAddress = "Hospital Road 7"
    ds.AccessionNumber = "ACC-4242"
    ds.Modality = "CR"
    ds.BurnedInAnnotation = "NO"
    item = Dataset()
    item.ReferringPhysicianName = "Nested^Name"
    item.StudyDate = "20200202"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.7"
    ds.ReferencedStudySequence = Sequence([item])
    ds.add_new(0x60003000, "OB", b"\x00\x01" * 8)  # overlay data
    ds.add_new(0x60004000, "LT", "overlay comment Jane")
    ds.add_new(0x50000010, "US", 1)  # curve group
    ds.add_new(0x00291010, "LO", "private Jane")
    ds.Rows, ds.Columns = 4, 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.arange(16, dtype=np.uint8).tobytes()
    return ds


def crafted_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_crafted_file_nested_names_overlays_curves_and_private_tags_are_removed() -> None:
    ds = crafted_dataset()
    dicom.deidentify_dataset(ds, key=KEY)
    text = all_text(ds)
    for secret in (
        "Doe^Jane",
        "MRN-998877",
        "19700101",
        "1 Main Street",
        "555-0100",
        "Tech^Tom",
        "Dr^House",
        "Hospital Road 7",
        "ACC-4242",
        "Nested^Name",
        "20200202",
        "1.2.3.4.5.7",
        "Jane",
    ):
        assert secret not in text, secret
    assert ds.PatientSex == ""
    assert not any(0x5000 <= elem.tag.group <= 0x60FF for elem in ds)


def test_deidentified_bytes_hold_no_identifying_text_and_keep_the_patient_key() -> None:
    raw = Path(ct_path()).read_bytes()
    clean = dicom.deidentified_bytes(raw, key=KEY)
    for secret in (b"CompressedSamples", b"1CT1", b"ABCD1234", b"JFK IMAGING", b"20040119"):
        assert secret not in clean
    # Re-reading medimg's own output keeps the same pseudonym instead of hashing it again.
    header = dicom.read_dicom_header(clean, key=KEY)
    assert header.patient_key == pseudonymise("1CT1", KEY)
    again = dicom.read_dicom(clean, key=KEY)
    original = dicom.read_dicom(raw, key=KEY)
    np.testing.assert_array_equal(again.pixels, original.pixels)


def test_read_ct_small_pixels_and_safe_metadata() -> None:
    img = dicom.read_dicom(ct_path(), key=KEY)
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (128, 128)
    assert img.pixels.min() >= 0.0 and img.pixels.max() <= 1.0
    assert img.header.safe_metadata() == {
        "modality": "CT",
        "rows": 128,
        "columns": 128,
        "frames": 1,
        "pixel_spacing": [0.661468, 0.661468],
    }
    assert img.frame == 0 and not img.was_rgb
    assert img.header.patient_key == pseudonymise("1CT1", KEY)


def test_mr_small_uses_its_window_centre_and_width() -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    img = dicom.read_dicom(get_testdata_file("MR_small.dcm"), key=KEY)
    assert any("window centre 600" in n for n in img.notes)
    values = ds.pixel_array.astype(float) * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    expected = np.clip((values - (600 - 0.5)) / (1600 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)


def test_multi_frame_uses_the_middle_frame_by_default() -> None:
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    middle = dicom.read_dicom(path, key=KEY)
    assert middle.header.frames == 15 and middle.frame == 7
    first = dicom.read_dicom(path, frame=0, key=KEY)
    assert first.frame == 0
    assert not np.array_equal(ds.pixel_array[7], ds.pixel_array[0])
    assert not np.array_equal(middle.pixels, first.pixels)
    with pytest.raises(ImageError, match=r"Frame 15 does not exist in 'rtdose.dcm', which has 15"):
        dicom.read_dicom(path, frame=15, key=KEY)


def test_rgb_dicom_becomes_luminance() -> None:
    img = dicom.read_dicom(get_testdata_file("SC_rgb_rle_2frame.dcm"), key=KEY)
    assert img.was_rgb and img.pixels.ndim == 2
    assert any("luminance" in n for n in img.notes)


def test_dicom_without_pixel_data_is_refused_with_a_clear_message() -> None:
    ds = crafted_dataset()
    del ds.PixelData
    raw = crafted_bytes(ds)
    header = dicom.read_dicom_header(raw, key=KEY, name="report.dcm")
    assert not header.has_pixels
    with pytest.raises(ImageError, match=r"'report.dcm' is a DICOM file without pixel data"):
        dicom.read_dicom(raw, key=KEY, name="report.dcm")
    with pytest.raises(ImageError, match=r"'DICOMDIR' is a DICOM file without pixel data"):
        dicom.read_dicom(get_testdata_file("DICOMDIR"), key=KEY)


def test_truncated_and_non_dicom_files_raise_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"MR_truncated.dcm"):
        dicom.read_dicom(get_testdata_file("MR_truncated.dcm"), key=KEY)
    fake = tmp_path / "notes.dcm"
    fake.write_text("this is not a DICOM file", encoding="utf-8")
    with pytest.raises(ImageError, match=r"'notes.dcm' (is not a DICOM file|could not be read)"):
        dicom.read_dicom(fake, key=KEY)


def test_is_dicom_by_marker_or_suffix(tmp_path: Path) -> None:
    raw = Path(ct_path()).read_bytes()
    assert dicom.is_dicom(raw)
    assert not dicom.is_dicom(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    plain = tmp_path / "image_without_suffix"
    plain.write_bytes(raw)
    assert dicom.is_dicom(plain)


def test_rules_use_real_dicom_keywords_and_tags() -> None:
    keywords = [r.keyword for r in dicom.DEIDENTIFICATION_RULES]
    assert len(keywords) == len(set(keywords))
    for rule in dicom.DEIDENTIFICATION_RULES:
        tag = tag_for_keyword(rule.keyword)
        assert tag is not None, rule.keyword
        assert tag == (rule.tag[0] << 16 | rule.tag[1]), rule.keyword
        assert rule.action in {"D", "Z", "X", "U"}


def test_every_rule_is_documented_with_its_action() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for rule in dicom.DEIDENTIFICATION_RULES:
        pattern = rf"\|\s*{rule.keyword}\s*\|\s*\({rule.tag[0]:04X},{rule.tag[1]:04X}\)\s*\|\s*{rule.action}\s*\|"
        assert re.search(pattern, text), rule.keyword


def test_generated_uid_is_not_standard_and_unchanged_standard_uids() -> None:
    uid = generate_uid()
    assert dicom.pseudonymous_uid(uid, KEY) != uid
    ds = crafted_dataset()
    dicom.deidentify_dataset(ds, key=KEY)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


# --- the method value fits its VR, and pydicom's own warnings never reach stderr ---


def dicom_bytes(raw: dict[int, tuple[str, bytes]] | None = None, **values: object) -> bytes:
    """CT_small with ``values`` set, and ``raw`` elements (tag: (VR, bytes)) written unchecked."""
    ds = pydicom.dcmread(ct_path())
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # building the hostile file, not reading it
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        for tag, (vr, value) in (raw or {}).items():
            ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
        ds.save_as(out)
    return out.getvalue()


def test_the_deidentification_method_fits_a_dicom_lo() -> None:
    assert len(dicom.DEIDENTIFICATION_METHOD) <= 64  # LO: at most 64 characters
    assert dicom.DEIDENTIFICATION_METHOD.startswith("medimg:")
    assert all(len(m) > 64 for m in dicom.LEGACY_DEIDENTIFICATION_METHODS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = dicom.deidentified_bytes(ct_path(), key=KEY)
    assert [str(w.message) for w in caught] == []
    assert pydicom.dcmread(io.BytesIO(out)).DeidentificationMethod == dicom.DEIDENTIFICATION_METHOD


@pytest.mark.parametrize(
    "method", [dicom.DEIDENTIFICATION_METHOD, *dicom.LEGACY_DEIDENTIFICATION_METHODS]
)
def test_files_written_by_medimg_old_or_new_keep_their_pseudonym(method: str) -> None:
    pseudonym = pseudonymise("1CT1", KEY)
    raw = dicom_bytes(PatientID=pseudonym, DeidentificationMethod=method)
    header = dicom.read_dicom_header(raw, key=b"another-key-0123456789abcdef0123")
    assert header.patient_key == pseudonym


def test_a_foreign_method_does_not_keep_a_pseudonym_looking_id() -> None:
    pseudonym = pseudonymise("1CT1", KEY)
    raw = dicom_bytes(PatientID=pseudonym, DeidentificationMethod="medimg: forged")
    header = dicom.read_dicom_header(raw, key=KEY)
    assert header.patient_key == pseudonymise(pseudonym, KEY)


def test_pydicom_warnings_become_notes_without_the_values() -> None:
    # An invalid UI value and an over-long LO make pydicom warn when it reads them.
    raw = dicom_bytes({0x00080016: ("UI", b"1.2.abc\x00")}, DeidentificationMethod="x" * 124)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = dicom.read_dicom(raw, key=KEY, name="odd.dcm")
        dicom.read_dicom_header(raw, key=KEY, name="odd.dcm")
        dicom.deidentified_bytes(raw, key=KEY, name="odd.dcm")
    assert [str(w.message) for w in caught] == []
    note = next(n for n in img.notes if n.startswith("pydicom reported"))
    assert "pydicom reported 2 problem(s)" in note and "VR UI" in note and "VR LO" in note
    assert "1.2.abc" not in note and "Please see" not in note


def test_a_frame_above_the_pixel_cap_is_refused_before_decoding() -> None:
    # The header claims 6000 × 6000 but the pixel data is CT_small's 128 × 128: decoding would
    # fail; the cap is checked from Rows / Columns first.
    raw = dicom_bytes(Rows=6000, Columns=6000)
    with pytest.raises(LimitError, match=r"6000×6000 pixels, more than the cap of 1,000,000; "):
        dicom.read_dicom(raw, key=KEY, name="big.dcm", max_pixels=1_000_000)


def test_unreadable_header_values_are_an_image_error() -> None:
    raw = dicom_bytes({0x00280008: ("IS", b"many")})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match=r"'bad\.dcm' has DICOM header values that cannot"):
            dicom.read_dicom_header(raw, key=KEY, name="bad.dcm")
    assert [str(w.message) for w in caught] == []


def test_a_file_pydicom_cannot_rewrite_gets_a_one_line_error() -> None:
    # Pixel data left unencapsulated under a compressed transfer syntax: pydicom's message
    # carries a whole traceback of its own; the error keeps its first line only.
    ds = pydicom.dcmread(ct_path())
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    # Raw pixels under RLE Lossless's name (a UID of the same length, so the header holds).
    raw = out.getvalue().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00", 1)
    with pytest.raises(ImageError) as caught:
        dicom.deidentified_bytes(raw, key=KEY, name="j2k.dcm")
    message = str(caught.value)
    assert message.startswith("'j2k.dcm' could not be") and "\n" not in message
    assert "Traceback" not in message
