"""DICOM reading with de-identification on ingest.

Every path that reads a DICOM file de-identifies the header in memory right after parsing,
before anything else is read from it, following the DICOM PS3.15 Annex E *Basic Application
Level Confidentiality Profile* (table :data:`DEIDENTIFICATION_RULES`, documented in
``docs/dicom-deidentification.md``). Callers never receive a ``pydicom.Dataset``: they get the
windowed pixels and a short, safe subset of the header (modality, rows, columns, frames, pixel
spacing) plus a keyed pseudonymous patient key (HMAC-SHA256 of PatientID with a key kept outside
the data, :func:`medimg_core.privacy.pseudonymise`), used only for grouping splits.

Pixel values follow PS3.3: modality LUT (rescale slope / intercept) first, then the VOI
transform (a VOI LUT sequence, else the file's window centre / width, else min-max), then
MONOCHROME1 is inverted so that bright always means dense.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.pixels import pixel_array as _pixel_array
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag

from medimg_core.encryption import MAGIC, read_decrypted
from medimg_core.errors import EncryptionError, ImageError, LimitError, MedimgError
from medimg_core.imaging.stored import plaintext
from medimg_core.privacy import pseudonym_key, pseudonymise

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "DEIDENTIFICATION_RULES",
    "LEGACY_DEIDENTIFICATION_METHODS",
    "DeidRule",
    "DicomHeader",
    "DicomImage",
    "deidentified_bytes",
    "deidentify_dataset",
    "is_dicom",
    "pseudonymous_uid",
    "read_dicom",
    "read_dicom_header",
]

DicomSource = str | os.PathLike[str] | bytes

Action = Literal["D", "Z", "X", "U"]


@dataclass(frozen=True)
class DeidRule:
    """One attribute of the confidentiality profile and what medimg does with it.

    ``action`` uses the letters of PS3.15 Table E.1-1: ``D`` replace with a dummy value, ``Z``
    replace with a zero-length value, ``X`` remove, ``U`` replace the UID with a consistent
    non-identifying one (here an HMAC-derived UID under the ``2.25`` root).
    """

    keyword: str
    tag: tuple[int, int]
    action: Action
    group: str


def _r(keyword: str, group: int, element: int, action: Action, what: str) -> DeidRule:
    return DeidRule(keyword, (group, element), action, what)


DEIDENTIFICATION_RULES: tuple[DeidRule, ...] = (
    _r("PatientName", 0x0010, 0x0010, "Z", "patient identity"),
    _r("PatientID", 0x0010, 0x0020, "D", "patient identity"),
    _r("IssuerOfPatientID", 0x0010, 0x0021, "X", "patient identity"),
    _r("OtherPatientIDs", 0x0010, 0x1000, "X", "patient identity"),
    _r("OtherPatientIDsSequence", 0x0010, 0x1002, "X", "patient identity"),
    _r("OtherPatientNames", 0x0010, 0x1001, "X", "patient identity"),
    _r("PatientBirthName", 0x0010, 0x1005, "X", "patient identity"),
    _r("PatientMotherBirthName", 0x0010, 0x1060, "X", "patient identity"),
    _r("MedicalRecordLocator", 0x0010, 0x1090, "X", "patient identity"),
    _r("ReferencedPatientSequence", 0x0008, 0x1120, "X", "patient identity"),
    _r("PatientBirthDate", 0x0010, 0x0030, "Z", "demographics"),
    _r("PatientBirthTime", 0x0010, 0x0032, "X", "demographics"),
    _r("PatientSex", 0x0010, 0x0040, "Z", "demographics"),
    _r("PatientAge", 0x0010, 0x1010, "X", "demographics"),
    _r("PatientSize", 0x0010, 0x1020, "X", "demographics"),
    _r("PatientWeight", 0x0010, 0x1030, "X", "demographics"),
    _r("PatientAddress", 0x0010, 0x1040, "X", "demographics"),
    _r("CountryOfResidence", 0x0010, 0x2150, "X", "demographics"),
    _r("RegionOfResidence", 0x0010, 0x2152, "X", "demographics"),
    _r("PatientTelephoneNumbers", 0x0010, 0x2154, "X", "demographics"),
    _r("EthnicGroup", 0x0010, 0x2160, "X", "demographics"),
    _r("Occupation", 0x0010, 0x2180, "X", "demographics"),
    _r("MilitaryRank", 0x0010, 0x1080, "X", "demographics"),
    _r("BranchOfService", 0x0010, 0x1081, "X", "demographics"),
    _r("SmokingStatus", 0x0010, 0x21A0, "X", "demographics"),
    _r("PregnancyStatus", 0x0010, 0x21C0, "X", "demographics"),
    _r("MedicalAlerts", 0x0010, 0x2000, "X", "demographics"),
    _r("Allergies", 0x0010, 0x2110, "X", "demographics"),
    _r("AdditionalPatientHistory", 0x0010, 0x21B0, "X", "demographics"),
    _r("PatientComments", 0x0010, 0x4000, "X", "demographics"),
    _r("PatientInsurancePlanCodeSequence", 0x0010, 0x0050, "X", "demographics"),
    _r("PatientPrimaryLanguageCodeSequence", 0x0010, 0x0101, "X", "demographics"),
    _r("ResponsiblePerson", 0x0010, 0x2297, "X", "demographics"),
    _r("ResponsibleOrganization", 0x0010, 0x2299, "X", "demographics"),
    _r("CurrentPatientLocation", 0x0038, 0x0300, "X", "demographics"),
    _r("PatientInstitutionResidence", 0x0038, 0x0400, "X", "demographics"),
    _r("AdmittingDiagnosesDescription", 0x0008, 0x1080, "X", "demographics"),
    _r("StudyDate", 0x0008, 0x0020, "Z", "dates and times"),
    _r("SeriesDate", 0x0008, 0x0021, "X", "dates and times"),
    _r("AcquisitionDate", 0x0008, 0x0022, "X", "dates and times"),
    _r("ContentDate", 0x0008, 0x0023, "Z", "dates and times"),
    _r("AcquisitionDateTime", 0x0008, 0x002A, "X", "dates and times"),
    _r("StudyTime", 0x0008, 0x0030, "Z", "dates and times"),
    _r("SeriesTime", 0x0008, 0x0031, "X", "dates and times"),
    _r("AcquisitionTime", 0x0008, 0x0032, "X", "dates and times"),
    _r("ContentTime", 0x0008, 0x0033, "Z", "dates and times"),
    _r("InstanceCreationDate", 0x0008, 0x0012, "X", "dates and times"),
    _r("InstanceCreationTime", 0x0008, 0x0013, "X", "dates and times"),
    _r("TimezoneOffsetFromUTC", 0x0008, 0x0201, "X", "dates and times"),
    _r("PerformedProcedureStepStartDate", 0x0040, 0x0244, "X", "dates and times"),
    _r("PerformedProcedureStepStartTime", 0x0040, 0x0245, "X", "dates and times"),
    _r("AccessionNumber", 0x0008, 0x0050, "Z", "study identifiers"),
    _r("StudyID", 0x0020, 0x0010, "Z", "study identifiers"),
    _r("PerformedProcedureStepID", 0x0040, 0x0253, "X", "study identifiers"),
    _r("RequestAttributesSequence", 0x0040, 0x0275, "X", "study identifiers"),
    _r("StudyDescription", 0x0008, 0x1030, "X", "free text"),
    _r("SeriesDescription", 0x0008, 0x103E, "X", "free text"),
    _r("ImageComments", 0x0020, 0x4000, "X", "free text"),
    _r("StudyComments", 0x0032, 0x4000, "X", "free text"),
    _r("DerivationDescription", 0x0008, 0x2111, "X", "free text"),
    _r("PerformedProcedureStepDescription", 0x0040, 0x0254, "X", "free text"),
    _r("RequestedProcedureDescription", 0x0032, 0x1060, "X", "free text"),
    _r("ProtocolName", 0x0018, 0x1030, "X", "free text"),
    _r("ContentSequence", 0x0040, 0xA730, "X", "free text"),
    _r("InstitutionName", 0x0008, 0x0080, "X", "institution and staff"),
    _r("InstitutionAddress", 0x0008, 0x0081, "X", "institution and staff"),
    _r("InstitutionalDepartmentName", 0x0008, 0x1040, "X", "institution and staff"),
    _r("InstitutionCodeSequence", 0x0008, 0x0082, "X", "institution and staff"),
    _r("ReferringPhysicianName", 0x0008, 0x0090, "Z", "institution and staff"),
    _r("ReferringPhysicianAddress", 0x0008, 0x0092, "X", "institution and staff"),
    _r("ReferringPhysicianTelephoneNumbers", 0x0008, 0x0094, "X", "institution and staff"),
    _r("ReferringPhysicianIdentificationSequence", 0x0008, 0x0096, "X", "institution and staff"),
    _r("PhysiciansOfRecord", 0x0008, 0x1048, "X", "institution and staff"),
    _r("PerformingPhysicianName", 0x0008, 0x1050, "X", "institution and staff"),
    _r("NameOfPhysiciansReadingStudy", 0x0008, 0x1060, "X", "institution and staff"),
    _r("OperatorsName", 0x0008, 0x1070, "X", "institution and staff"),
    _r("RequestingPhysician", 0x0032, 0x1032, "X", "institution and staff"),
    _r("StationName", 0x0008, 0x1010, "X", "institution and staff"),
    _r("DeviceSerialNumber", 0x0018, 0x1000, "X", "institution and staff"),
    _r("StudyInstanceUID", 0x0020, 0x000D, "U", "UIDs"),
    _r("SeriesInstanceUID", 0x0020, 0x000E, "U", "UIDs"),
    _r("SOPInstanceUID", 0x0008, 0x0018, "U", "UIDs"),
    _r("FrameOfReferenceUID", 0x0020, 0x0052, "U", "UIDs"),
    _r("SynchronizationFrameOfReferenceUID", 0x0020, 0x0200, "U", "UIDs"),
    _r("ReferencedSOPInstanceUID", 0x0008, 0x1155, "U", "UIDs"),
    _r("IrradiationEventUID", 0x0008, 0x3010, "U", "UIDs"),
    _r("StorageMediaFileSetUID", 0x0088, 0x0140, "U", "UIDs"),
    _r("UID", 0x0040, 0xA124, "U", "UIDs"),
)
"""The attributes handled by name, with their PS3.15 Table E.1-1 action (see the module text
for the sweeps that follow: private tags, curves, overlays, every remaining person name, date,
time and non-standard UID)."""

DEIDENTIFICATION_METHOD = "medimg: PS3.15 Basic Profile; PatientID HMAC-SHA256 pseudonym"
"""Written to DeidentificationMethod (0012,0063), a LO of at most 64 characters; also how medimg
recognises its own output (the code sequence names the profile in full)."""

LEGACY_DEIDENTIFICATION_METHODS: tuple[str, ...] = (
    "medimg: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile; "
    "PatientID replaced by an HMAC-SHA256 pseudonym",
)
"""What older medimg versions wrote (124 characters, longer than LO allows); files carrying it
are still recognised as medimg's own."""

_OWN_METHODS = frozenset({DEIDENTIFICATION_METHOD, *LEGACY_DEIDENTIFICATION_METHODS})
_PIXELS_SETTING = "MEDIMG_MAX_IMAGE_PIXELS"  # read in medimg_core.imaging.pixels
_MAX_NOTES = 3

_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
_STANDARD_UID_ROOT = "1.2.840.10008."
_PSEUDONYM = re.compile(r"^[0-9a-f]{16}$")
_DATE_TIME_VRS = frozenset({"DA", "DT", "TM"})
_BLANKED_KEYWORDS = frozenset(r.keyword for r in DEIDENTIFICATION_RULES if r.action == "Z")
_RULES_BY_TAG = {Tag(*r.tag): r for r in DEIDENTIFICATION_RULES}
_CORE_GROUPS = frozenset({0x0004, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x7FE0})


@dataclass(frozen=True)
class DicomHeader:
    """The only header information medimg keeps from a DICOM file.

    Attributes
    ----------
    modality : e.g. "CT", "MR", "CR", "DX" ("" when absent).
    rows, columns : image size in pixels (0 when absent).
    frames : number of frames (1 for single-frame images).
    pixel_spacing : (row, column) spacing in mm, or None.
    patient_key : keyed pseudonym of PatientID, or None when the file has no PatientID.
    has_pixels : whether the file holds pixel data.
    burned_in_annotation : the file declares text burned into its pixels (BurnedInAnnotation).
    """

    modality: str
    rows: int
    columns: int
    frames: int
    pixel_spacing: tuple[float, float] | None
    patient_key: str | None
    has_pixels: bool
    burned_in_annotation: bool

    def safe_metadata(self) -> dict[str, Any]:
        """The displayable subset: modality, rows, columns, frames, pixel spacing."""
        return {
            "modality": self.modality,
            "rows": self.rows,
            "columns": self.columns,
            "frames": self.frames,
            "pixel_spacing": list(self.pixel_spacing) if self.pixel_spacing else None,
        }


@dataclass(frozen=True)
class DicomImage:
    """Windowed pixels of one frame, in [0, 1], with the safe header subset.

    Attributes
    ----------
    pixels : float32 array (rows, columns); bright means dense / high signal.
    header : the safe header subset and the pseudonymous patient key.
    frame : the frame index used (0 for single-frame images).
    bit_depth : BitsStored.
    was_rgb : the file holds colour pixels (converted to luminance).
    notes : how the pixel values were mapped (window, VOI LUT or min-max; inversion).
    """

    pixels: np.ndarray
    header: DicomHeader
    frame: int
    bit_depth: int
    was_rgb: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


def is_dicom(source: DicomSource) -> bool:
    """Whether ``source`` looks like a DICOM file.

    True for the ``DICM`` marker at byte 128 (a Part 10 file), and for a ``.dcm`` / ``.dicom``
    file name (files without the preamble exist in the wild).
    """
    if isinstance(source, bytes):
        return source[128:132] == b"DICM"
    path = Path(source)
    if path.suffix.lower() in {".dcm", ".dicom"}:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if head.startswith(MAGIC):
        # An uploaded file stored encrypted: the marker is inside the ciphertext.
        try:
            data = read_decrypted(path, what="The uploaded file")
        except (OSError, EncryptionError):
            return False
        return data[128:132] == b"DICM"
    return head[128:132] == b"DICM"


def pseudonymous_uid(uid: str, key: bytes) -> str:
    """A consistent, non-identifying replacement UID under the ``2.25`` root.

    The same UID and key always give the same result, so references between files stay intact;
    without the key the original cannot be recovered or confirmed.
    """
    digest = hmac.new(key, f"uid:{uid}".encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _patient_key(ds: Dataset, key: bytes) -> str | None:
    raw = str(ds.get("PatientID", "") or "").strip()
    if not raw:
        return None
    method = str(ds.get("DeidentificationMethod", "") or "").strip()
    if method in _OWN_METHODS and _PSEUDONYM.match(raw):
        return raw
    return pseudonymise(raw, key)


def _each_dataset(ds: Dataset) -> list[Dataset]:
    found = [ds]
    for elem in list(ds):
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                found.extend(_each_dataset(item))
    return found


def _apply_rule(ds: Dataset, rule: DeidRule, key: bytes, pseudonym: str | None) -> None:
    tag = Tag(*rule.tag)
    if tag not in ds:
        return
    if rule.action == "X":
        del ds[tag]
    elif rule.action == "Z":
        ds[tag].value = None if ds[tag].VR == "SQ" else ""
    elif rule.action == "D":
        ds[tag].value = pseudonym or ""
    else:
        ds[tag].value = _replace_uids(ds[tag].value, key)


def _replace_uids(value: Any, key: bytes) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, list | tuple | MultiValue):
        return [_replace_uid(str(v), key) for v in value]
    return _replace_uid(str(value), key)


def _replace_uid(uid: str, key: bytes) -> str:
    if not uid or uid.startswith(_STANDARD_UID_ROOT):
        return uid
    return pseudonymous_uid(uid, key)


def _is_curve_or_overlay(tag: BaseTag) -> bool:
    # Repeating groups 50xx (curves) and 60xx (overlays) may carry burned-in annotations.
    group = tag.group
    return (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF) and group % 2 == 0


def _sweep(key: bytes) -> Callable[[Dataset, DataElement], None]:
    def visit(ds: Dataset, elem: DataElement) -> None:
        tag = elem.tag
        if _is_curve_or_overlay(tag):
            del ds[tag]
        elif tag in _RULES_BY_TAG:
            return
        elif elem.VR == "PN":
            elem.value = ""
        elif elem.VR in _DATE_TIME_VRS:
            del ds[tag]
        elif elem.VR == "UI":
            elem.value = _replace_uids(elem.value, key)

    return visit


def deidentify_dataset(ds: Dataset, *, key: bytes) -> str | None:
    """De-identify ``ds`` in place (Basic Application Level Confidentiality Profile).

    Applies :data:`DEIDENTIFICATION_RULES` at every nesting level, removes private tags, curves
    and overlays, blanks every remaining person name, removes every remaining date / time, and
    replaces every UID outside the DICOM standard's own ``1.2.840.10008`` root with a consistent
    HMAC-derived one. PatientID becomes the keyed pseudonym. PatientIdentityRemoved is set to
    "YES" and the method is recorded.

    Parameters
    ----------
    ds : the dataset, straight from ``pydicom.dcmread``.
    key : the pseudonymisation key (:func:`medimg_core.privacy.pseudonym_key`).

    Returns
    -------
    str or None
        The pseudonymous patient key (None when the file has no PatientID).
    """
    pseudonym = _patient_key(ds, key)
    ds.remove_private_tags()
    for item in _each_dataset(ds):
        for rule in DEIDENTIFICATION_RULES:
            _apply_rule(item, rule, key, pseudonym)
    ds.walk(_sweep(key))
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = _replace_uid(str(meta.MediaStorageSOPInstanceUID), key)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = DicomSequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    return pseudonym


_QUOTED = re.compile(r"(['\"]).*?\1")


@contextmanager
def _pydicom_quiet(notes: list[str] | None = None) -> Iterator[None]:
    """Keep pydicom's own warnings off stderr (one clear line per problem is the rule); with
    ``notes``, turn them into short notes for the user.

    Quoted values are cut out of the notes: pydicom quotes the value it could not read, which
    may be a name or a date of the patient. pydicom's logger has a NullHandler of its own, so
    its log records never reach stderr either.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if notes is None:
        return
    seen: list[str] = []
    for w in caught:
        lines = _QUOTED.sub("'…'", str(w.message)).strip().splitlines()
        text = lines[0].split(" Please see ")[0][:160] if lines else ""
        if text and text not in seen:
            seen.append(text)
    if seen:
        shown = "; ".join(seen[:_MAX_NOTES]) + ("; …" if len(seen) > _MAX_NOTES else "")
        notes.append(f"pydicom reported {len(seen)} problem(s) in the header, ignored: {shown}")


def _first_line(exc: BaseException) -> str:
    """An exception's message for a one-line error: pydicom appends a whole traceback to some."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


@contextmanager
def _unreadable_values(label: str) -> Iterator[None]:
    """Header values pydicom cannot convert (a Rows of text, a broken sequence) as one clear
    ImageError; medimg's own errors pass through."""
    try:
        yield
    except MedimgError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        raise ImageError(
            f"'{label}' has DICOM header values that cannot be read ({type(exc).__name__}); "
            "the file may be damaged: export it again from the archive, or remove it."
        ) from exc


def _name(source: DicomSource, name: str | None) -> str:
    if name:
        return name
    return "uploaded file" if isinstance(source, bytes) else Path(source).name


def _read(source: DicomSource, *, name: str | None, header_only: bool) -> Dataset:
    label = _name(source, name)
    fh: Any = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    try:
        with _pydicom_quiet():
            ds = pydicom.dcmread(fh, stop_before_pixels=header_only, force=True)
    except (InvalidDicomError, OSError, ValueError, KeyError, EOFError, TypeError) as exc:
        raise ImageError(
            f"'{label}' could not be read as DICOM ({_first_line(exc)}); check that the file is complete "
            "and is a DICOM image, or remove it."
        ) from exc
    # force=True also "parses" arbitrary bytes; a real file has attributes of the standard's
    # core groups (identification, patient, acquisition, relationship, image).
    has_meta = len(getattr(ds, "file_meta", None) or ()) > 0
    with _pydicom_quiet(), _unreadable_values(label):
        core = has_meta or any(elem.tag.group in _CORE_GROUPS for elem in ds)
    if not core:
        raise ImageError(
            f"'{label}' is not a DICOM file (no DICOM attributes found); remove it or replace "
            "it with the DICOM export of the image."
        )
    return ds


def _header(ds: Dataset, patient_key: str | None, *, has_pixels: bool) -> DicomHeader:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    pixel_spacing = None
    if spacing is not None and len(spacing) == 2:
        pixel_spacing = (float(spacing[0]), float(spacing[1]))
    return DicomHeader(
        modality=str(ds.get("Modality", "") or ""),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        frames=max(1, int(ds.get("NumberOfFrames", 1) or 1)),
        pixel_spacing=pixel_spacing,
        patient_key=patient_key,
        has_pixels=has_pixels,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES",
    )


def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def read_dicom_header(
    source: DicomSource, *, key: bytes | None = None, name: str | None = None
) -> DicomHeader:
    """Read and de-identify a DICOM header (no pixel decoding).

    Parameters
    ----------
    source : path or the file's bytes.
    key : pseudonymisation key; default :func:`medimg_core.privacy.pseudonym_key`.
    name : how to name the file in messages (default: its file name).

    Raises
    ------
    ImageError
        When the file is not readable as DICOM.
    """
    name = _name(source, name)
    source = plaintext(source)
    ds = _read(source, name=name, header_only=True)
    # stop_before_pixels leaves the pixel element out; its tag position tells whether it exists.
    has_pixels = _has_pixels(ds) or _file_has_pixel_tag(source)
    with _pydicom_quiet(), _unreadable_values(name):
        patient_key = deidentify_dataset(ds, key=key if key is not None else pseudonym_key())
        return _header(ds, patient_key, has_pixels=has_pixels)


def _file_has_pixel_tag(source: DicomSource) -> bool:
    fh: Any = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    try:
        with _pydicom_quiet():
            ds = pydicom.dcmread(fh, force=True, specific_tags=["PixelData"], defer_size=64)
    except (InvalidDicomError, OSError, ValueError, KeyError, EOFError, TypeError):
        return False
    return _has_pixels(ds)


def _window(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, str]:
    centre = ds.get("WindowCenter")
    width = ds.get("WindowWidth")
    if isinstance(centre, MultiValue):
        centre = centre[0]
    if isinstance(width, MultiValue):
        width = width[0]
    c, w = float(centre), float(width)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    elif function == "LINEAR_EXACT":
        out = (values - c) / w + 0.5
    else:
        out = (values - (c - 0.5)) / max(w - 1.0, 1.0) + 0.5
    return np.clip(out, 0.0, 1.0), f"window centre {c:g} / width {w:g} ({function.lower()})"


def _min_max(values: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float64)
    return (values - lo) / (hi - lo)


def read_dicom(
    source: DicomSource,
    *,
    frame: int | None = None,
    key: bytes | None = None,
    name: str | None = None,
    max_pixels: int | None = None,
) -> DicomImage:
    """Read one frame of a DICOM image, de-identified, windowed to [0, 1].

    Parameters
    ----------
    source : path or the file's bytes.
    frame : frame index for multi-frame files; default the middle frame (``frames // 2``).
    key : pseudonymisation key; default :func:`medimg_core.privacy.pseudonym_key`.
    name : how to name the file in messages (default: its file name).
    max_pixels : most pixels (Rows × Columns) of a frame, checked from the header before the
        pixels are decoded; None for no cap.

    Raises
    ------
    ImageError
        When the file is not DICOM, has no pixel data, the frame does not exist, or the pixel
        data cannot be decoded.
    LimitError
        When a frame has more than ``max_pixels`` pixels.
    """
    label = _name(source, name)
    source = plaintext(source)
    ds = _read(source, name=label, header_only=False)
    notes: list[str] = []
    with _pydicom_quiet(notes), _unreadable_values(label):
        patient_key = deidentify_dataset(ds, key=key if key is not None else pseudonym_key())
        header = _header(ds, patient_key, has_pixels=_has_pixels(ds))
        image = _decode(ds, header, label, frame, max_pixels, notes)
    return replace(image, notes=tuple(notes))


def _decode(
    ds: Dataset,
    header: DicomHeader,
    label: str,
    frame: int | None,
    max_pixels: int | None,
    notes: list[str],
) -> DicomImage:
    if not header.has_pixels:
        raise ImageError(
            f"'{label}' is a DICOM file without pixel data (for example a DICOMDIR, report or "
            "structured report); remove it from the image set."
        )
    if frame is None:
        frame = header.frames // 2
    if not 0 <= frame < header.frames:
        raise ImageError(
            f"Frame {frame} does not exist in '{label}', which has {header.frames} frame(s); "
            f"choose a frame between 0 and {header.frames - 1}."
        )
    if max_pixels is not None and header.rows * header.columns > max_pixels:
        raise LimitError(
            f"'{label}' is {header.columns}×{header.rows} pixels, more than the cap of "
            f"{max_pixels:,}; downsample it first, or ask the administrator to raise "
            f"{_PIXELS_SETTING}."
        )
    try:
        arr = _pixel_array(ds, index=frame if header.frames > 1 else None)
    except Exception as exc:  # decoders raise many types; all mean "cannot decode these pixels"
        raise ImageError(
            f"The pixel data of '{label}' could not be decoded ({type(exc).__name__}: {_first_line(exc)}); "
            "the file may be truncated or use a compression this installation cannot decode "
            "(export it uncompressed)."
        ) from exc
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    was_rgb = samples == 3 or arr.ndim == 3
    if was_rgb:
        rgb = np.asarray(arr, dtype=np.float64)
        values = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        out = np.clip(values / float(2**bits - 1), 0.0, 1.0)
        notes.append("colour DICOM converted to luminance (0.299 R + 0.587 G + 0.114 B)")
    else:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        if "VOILUTSequence" in ds:
            out = _min_max(np.asarray(apply_voi_lut(values, ds, prefer_lut=True), np.float64))
            notes.append("VOI LUT applied")
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            out, how = _window(values, ds)
            notes.append(how)
        else:
            out = _min_max(values)
            notes.append("no window in the file: min-max scaled")
        if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            out = 1.0 - out
            notes.append("MONOCHROME1 inverted")
    return DicomImage(
        pixels=np.ascontiguousarray(out, dtype=np.float32),
        header=header,
        frame=frame,
        bit_depth=bits,
        was_rgb=was_rgb,
        notes=tuple(notes),
    )


def deidentified_bytes(source: DicomSource, *, key: bytes, name: str | None = None) -> bytes:
    """The file re-encoded after de-identification, for storing uploads without identities.

    Raises
    ------
    ImageError
        When the file is not readable as DICOM.
    """
    name = _name(source, name)
    source = plaintext(source)
    ds = _read(source, name=name, header_only=False)
    out = io.BytesIO()
    try:
        with _pydicom_quiet():
            deidentify_dataset(ds, key=key)
            ds.save_as(out, enforce_file_format=False)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ImageError(
            f"'{name}' could not be re-written after de-identification ({_first_line(exc)}); "
            "export it again from the archive, or remove it."
        ) from exc
    return out.getvalue()
