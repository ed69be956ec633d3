"""Radiomics settings read from a PyRadiomics-layout parameter file.

A parameter file has three top-level sections, as PyRadiomics' own::

    setting:        # preprocessing and discretisation (binWidth, resampledPixelSpacing ...)
    imageType:      # which image the features are computed on: only ``Original`` here
    featureClass:   # which families, and which features of each (null = all of them)

Everything medimg cannot honour is refused with a :class:`~medimg_core.errors.ConfigError` that
names the key, the value and the fix: a typo or an unsupported option never passes silently, so
a table of features always means what its settings file says.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue

__all__ = ["SCHEMA_VERSION", "RadiomicsSettings"]

SCHEMA_VERSION = "medimg-radiomics/1"
_KIND = "radiomics"
_MAX_YAML_CHARS = 1_000_000

_CLASS_ALIASES: dict[str, str] = {
    **{column_family: family for family, column_family in catalogue.FAMILIES.items()},
    **{family: family for family in catalogue.FAMILIES},
    "gldm": "ngldm",
}
"""featureClass names -> medimg family: PyRadiomics' class names (``shape``, ``firstorder``,
``gldm`` ...), the column prefixes and medimg's own family names."""

_REFUSED_CLASSES: dict[str, str] = {
    "shape2D": "2-D shape features are not supported (medimg computes 3-D morphology as "
    "'shape'); remove shape2D",
}

_INTERPOLATORS: dict[str, str] = {
    "sitkNearestNeighbor": "nearest",
    "sitkLinear": "linear",
    "sitkBSpline": "bspline",
    "nearest": "nearest",
    "linear": "linear",
    "bspline": "bspline",
}
_SITK_NAMES = {"nearest": "sitkNearestNeighbor", "linear": "sitkLinear", "bspline": "sitkBSpline"}

_IGNORED_WHEN: dict[str, tuple[Any, ...]] = {
    # PyRadiomics options whose given value is what medimg does anyway; accepted so that
    # PyRadiomics' example files load, and not stored.
    "additionalInfo": (True, False),
    "preCrop": (True, False),
    "correctMask": (False,),
    "symmetricalGLCM": (True,),
    "force2Ddimension": (0,),
    "voxelArrayShift": (0,),
    "enableCExtensions": (True, False),
}

_UNSUPPORTED_SETTINGS: dict[str, str] = {
    "normalizeScale": "intensity normalisation is not supported",
    "removeOutliers": "outlier removal is not IBSI re-segmentation; use resegmentRange",
    "resegmentShape": "re-segmenting the shape is not supported; the morphological mask is "
    "never re-segmented (IBSI)",
    "weightingNorm": "distance-weighted GLCM matrices are not IBSI-standard",
    "kernelRadius": "voxel-based maps are not supported",
    "maskedKernel": "voxel-based maps are not supported",
    "initValue": "voxel-based maps are not supported",
    "voxelBatch": "voxel-based maps are not supported",
    "sigma": "filtered images (LoG) are not supported",
    "start_level": "filtered images (wavelet) are not supported",
    "level": "filtered images (wavelet) are not supported",
    "wavelet": "filtered images (wavelet) are not supported",
    "gradientUseSpacing": "filtered images (gradient) are not supported",
    "lbp2DRadius": "filtered images (LBP) are not supported",
    "lbp2DSamples": "filtered images (LBP) are not supported",
    "lbp2DMethod": "filtered images (LBP) are not supported",
    "lbp3DLevels": "filtered images (LBP) are not supported",
    "lbp3DIcosphereRadius": "filtered images (LBP) are not supported",
    "lbp3DIcosphereSubdivision": "filtered images (LBP) are not supported",
}

_SETTING_KEYS = (
    "binWidth",
    "binCount",
    "resampledPixelSpacing",
    "interpolator",
    "resegmentRange",
    "resegmentMode",
    "label",
    "force2D",
    "geometryTolerance",
    "distances",
    "gldm_a",
    "minimumROIDimensions",
    "minimumROISize",
    "padDistance",
    "normalize",
    "aggregation",
)


def _all_classes() -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    return tuple((family, None) for family in catalogue.FAMILIES)


@dataclass(frozen=True)
class RadiomicsSettings:
    """How radiomic features are computed: PyRadiomics' parameter file as a typed value.

    Build one with :meth:`from_yaml` or :meth:`from_mapping`, which check every key; the
    constructor trusts its arguments. Defaults are PyRadiomics' defaults.

    Attributes
    ----------
    bin_width : fixed bin width in intensity units (``binWidth``, default 25).
    bin_count : fixed number of bins (``binCount``); when set it is used instead of the bin
        width, as in PyRadiomics.
    resampled_spacing : voxel size to resample to, ``(x, y, z)`` mm in PyRadiomics' order
        (``resampledPixelSpacing``); 0 keeps that axis; None keeps the image's grid.
    interpolator : ``nearest``, ``linear`` or ``bspline`` (``interpolator``, default
        ``sitkBSpline``).
    resegment_range : ``(low,)`` or ``(low, high)`` intensity range (``resegmentRange``).
    resegment_mode : ``absolute`` (the only mode supported).
    label : the mask value that marks the region (``label``, default 1).
    force_2d : texture computed in the slice plane (``force2D``): the 2.5D aggregations,
        which is what PyRadiomics computes (in-plane directions, matrices summed over slices).
    geometry_tolerance : tolerance when comparing image and mask geometry (``geometryTolerance``).
    distances : neighbourhood distances; only ``(1,)`` (``distances``).
    gldm_a : coarseness parameter alpha of the NGLDM (``gldm_a``, default 0).
    minimum_roi_dimensions : the region must extend over at least this many axes (1-3).
    minimum_roi_size : the region must hold at least this many voxels (None: no check).
    pad_distance : voxels kept around the region when cropping (``padDistance``, default 5).
    normalize : always False (intensity normalisation is not IBSI-standard here).
    aggregation : ``((family, aggregation), ...)``: medimg's extension choosing the IBSI
        aggregation of a texture family, e.g. ``(("glcm", "3D_comb"),)``.
    image_types : always ``("Original",)``.
    feature_classes : ``((family, names or None), ...)`` in catalogue family order; None
        enables every feature of the family.
    """

    bin_width: float = 25.0
    bin_count: int | None = None
    resampled_spacing: tuple[float, float, float] | None = None
    interpolator: str = "bspline"
    resegment_range: tuple[float, ...] | None = None
    resegment_mode: str = "absolute"
    label: int = 1
    force_2d: bool = False
    geometry_tolerance: float | None = None
    distances: tuple[int, ...] = (1,)
    gldm_a: float = 0.0
    minimum_roi_dimensions: int = 2
    minimum_roi_size: int | None = None
    pad_distance: int = 5
    normalize: bool = False
    aggregation: tuple[tuple[str, str], ...] = ()
    image_types: tuple[str, ...] = ("Original",)
    feature_classes: tuple[tuple[str, tuple[str, ...] | None], ...] = field(
        default_factory=_all_classes
    )

    @property
    def families(self) -> tuple[str, ...]:
        """The enabled feature families, in catalogue order."""
        return tuple(family for family, _ in self.feature_classes)

    @property
    def spacing_zyx(self) -> tuple[float, float, float] | None:
        """The resampling spacing in medimg's ``(z, y, x)`` order (0 keeps that axis)."""
        if self.resampled_spacing is None:
            return None
        x, y, z = self.resampled_spacing
        return (z, y, x)

    def aggregation_for(self, family: str) -> str | None:
        """The IBSI aggregation a texture family is computed with (None: the family default).

        An explicit ``aggregation`` entry wins; otherwise ``force2D`` chooses the 2.5D
        aggregation, which is what PyRadiomics' ``force2D`` computes.
        """
        explicit = dict(self.aggregation)
        if family in explicit:
            return explicit[family]
        if self.force_2d:
            available = _family_aggregations(family)
            for choice in ("2_5D_avg", "2_5D"):
                if choice in available:
                    return choice
        return None

    def describe(self) -> str:
        """One sentence for the user: what was computed and how."""
        if self.bin_count is not None:
            bins = f"{self.bin_count} grey levels (fixed bin count)"
        else:
            bins = f"bins {self.bin_width:g} units wide (fixed bin width)"
        if self.resampled_spacing is None:
            grid = "on each volume's own voxel grid (no resampling)"
        else:
            x, y, z = self.resampled_spacing
            grid = (
                f"after resampling to {x:g}×{y:g}×{z:g} mm (x×y×z, {self.interpolator} "
                "interpolation, 0 keeps an axis)"
            )
        reseg = ""
        if self.resegment_range is not None:
            low, *high = self.resegment_range
            reseg = (
                f", intensities re-segmented to [{low:g}, {high[0]:g}]"
                if high
                else (f", intensities re-segmented to ≥ {low:g}")
            )
        texture = (
            "3D texture"
            if not self.aggregation and not self.force_2d
            else (
                "texture aggregated as set ("
                + ", ".join(
                    f"{f} {self.aggregation_for(f)}"
                    for f in self.families
                    if self.aggregation_for(f)
                )
                + ")"
            )
        )
        return (
            f"IBSI radiomic features of each case's region (mask label {self.label}): "
            f"{', '.join(self.families)}; {grid}{reseg}; {bins}; {texture}."
        )

    @classmethod
    def from_yaml(cls, source: str | Path | bytes) -> RadiomicsSettings:
        """Settings from a PyRadiomics-layout YAML file (a :class:`~pathlib.Path`, or a path
        ending in ``.yaml``/``.yml``), YAML text, or the bytes of an uploaded file.

        Raises
        ------
        ConfigError
            The file cannot be read, is not YAML, or holds a key or value medimg cannot honour.
        """
        if isinstance(source, bytes):
            try:
                source = source.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    "The radiomics settings file is not UTF-8 text; save it as a plain YAML "
                    "text file (see docs/radiomics.example.yaml)."
                ) from exc
            if "\n" not in source:
                source += "\n"
        if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
        ):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ConfigError(
                    f"Cannot read the radiomics settings file {str(path)!r} ({exc}); "
                    "check the path, or paste the YAML text itself."
                ) from exc
        elif isinstance(source, str):
            text = source
        else:
            raise ConfigError(
                f"Radiomics settings must be YAML text or a file path, got {_show(source)}."
            )
        if len(text) > _MAX_YAML_CHARS:
            raise ConfigError(
                f"The radiomics settings text is {len(text)} characters long; a parameter file "
                f"holds at most {_MAX_YAML_CHARS}. Check that this is the right file."
            )
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
            raise ConfigError(
                f"The radiomics settings are not valid YAML ({_first_line(exc)}); fix the file "
                "(see docs/radiomics.example.yaml)."
            ) from exc
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Any) -> RadiomicsSettings:
        """Settings from a parsed PyRadiomics parameter mapping (None gives the defaults).

        Raises
        ------
        ConfigError
            A section, key or value medimg cannot honour; the message names it and the fix.
        """
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"Radiomics settings must be a mapping with the sections 'setting', "
                f"'imageType' and 'featureClass', got {_show(data)}."
            )
        for key in data:
            if key == "voxelSetting":
                raise ConfigError(
                    "voxelSetting: voxel-based maps are not supported; remove the "
                    "'voxelSetting' section."
                )
            if key not in ("setting", "imageType", "featureClass", "version", "kind"):
                raise ConfigError(
                    f"Unknown section {_show(key)} in the radiomics settings; the sections are "
                    "'setting', 'imageType' and 'featureClass'. Fix or remove it."
                )
        if "version" in data and data["version"] != SCHEMA_VERSION:
            raise ConfigError(
                f"version: {_show(data['version'])} is not a radiomics settings version this "
                f"medimg reads; expected {SCHEMA_VERSION!r}."
            )
        if "kind" in data and data["kind"] != _KIND:
            raise ConfigError(
                f"kind: {_show(data['kind'])} is not radiomics settings; expected {_KIND!r}."
            )
        options = _read_settings(data.get("setting"))
        _read_image_types(data.get("imageType"))
        return cls(**options, feature_classes=_read_feature_classes(data.get("featureClass")))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe, versioned form (PyRadiomics' layout plus ``version`` and ``kind``)."""
        return {"version": SCHEMA_VERSION, "kind": _KIND, **self._layout()}

    @classmethod
    def from_dict(cls, data: Any) -> RadiomicsSettings:
        """The settings :meth:`to_dict` wrote.

        Raises
        ------
        ConfigError
            Not a versioned radiomics settings dictionary, or a key or value is invalid.
        """
        if not isinstance(data, Mapping) or data.get("kind") != _KIND or "version" not in data:
            raise ConfigError(
                "Not saved radiomics settings: expected a mapping with kind 'radiomics' and "
                f"version {SCHEMA_VERSION!r}; got {_show(data)}."
            )
        return cls.from_mapping(data)

    def to_yaml(self) -> str:
        """The settings as a PyRadiomics-layout YAML parameter file."""
        text: str = yaml.safe_dump(self._layout(), sort_keys=False, default_flow_style=None)
        return text

    def _layout(self) -> dict[str, Any]:
        setting: dict[str, Any] = {
            "binWidth": self.bin_width,
            "binCount": self.bin_count,
            "resampledPixelSpacing": (
                None if self.resampled_spacing is None else list(self.resampled_spacing)
            ),
            "interpolator": _SITK_NAMES[self.interpolator],
            "resegmentRange": None if self.resegment_range is None else list(self.resegment_range),
            "resegmentMode": self.resegment_mode,
            "label": self.label,
            "force2D": self.force_2d,
            "geometryTolerance": self.geometry_tolerance,
            "distances": list(self.distances),
            "gldm_a": self.gldm_a,
            "minimumROIDimensions": self.minimum_roi_dimensions,
            "minimumROISize": self.minimum_roi_size,
            "padDistance": self.pad_distance,
            "normalize": self.normalize,
            "aggregation": {catalogue.FAMILIES[f]: a for f, a in self.aggregation},
        }
        return {
            "setting": setting,
            "imageType": {name: {} for name in self.image_types},
            "featureClass": {
                catalogue.FAMILIES[family]: None if names is None else list(names)
                for family, names in self.feature_classes
            },
        }


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _number(key: str, value: Any, *, minimum: float, strict: bool) -> float:
    bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
    fine = isinstance(value, int | float) and not isinstance(value, bool)
    number = math.nan
    if fine:
        try:
            number = float(value)
        except OverflowError:
            fine = False
    if not fine or not math.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ConfigError(f"setting {key}: {_show(value)} is not valid; give a number {bound}.")
    return number


def _whole(key: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    fine = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if fine and maximum is not None:
        fine = value <= maximum
    if not fine:
        span = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise ConfigError(
            f"setting {key}: {_show(value)} is not valid; give a whole number {span}."
        )
    return int(value)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"setting {key}: {_show(value)} is not valid; give true or false.")
    return value


def _read_settings(section: Any) -> dict[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"setting: {_show(section)} is not valid; 'setting' must be a mapping of option "
            "names to values, e.g. 'binWidth: 25'."
        )
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key in _IGNORED_WHEN:
            if not any(
                value is v or (type(value) is type(v) and value == v) for v in _IGNORED_WHEN[key]
            ):
                allowed = " or ".join(repr(v) for v in _IGNORED_WHEN[key])
                raise ConfigError(
                    f"setting {key}: {_show(value)} is not supported; medimg computes IBSI "
                    f"features as with {key}: {allowed}. Set that or remove the key."
                )
            continue
        if key in _UNSUPPORTED_SETTINGS:
            raise ConfigError(
                f"setting {key}: {_UNSUPPORTED_SETTINGS[key]} in medimg; remove '{key}'."
            )
        if key not in _SETTING_KEYS:
            raise ConfigError(
                f"Unknown setting {_show(key)}; the settings are: {', '.join(_SETTING_KEYS)}. "
                "Check the spelling (names are case-sensitive) or remove it."
            )
        _read_setting(str(key), value, out)
    return out


def _read_setting(key: str, value: Any, out: dict[str, Any]) -> None:
    if key == "binWidth":
        out["bin_width"] = _number(key, value, minimum=0.0, strict=True)
    elif key == "binCount":
        out["bin_count"] = None if value is None else _whole(key, value, minimum=1)
    elif key == "resampledPixelSpacing":
        if value is None:
            out["resampled_spacing"] = None
            return
        if not isinstance(value, list | tuple) or len(value) != 3:
            raise ConfigError(
                f"setting resampledPixelSpacing: {_show(value)} is not valid; give three "
                "spacings [x, y, z] in mm (0 keeps that axis), e.g. [1, 1, 1]."
            )
        x, y, z = (_number(key, v, minimum=0.0, strict=False) for v in value)
        out["resampled_spacing"] = (x, y, z)
    elif key == "interpolator":
        if not isinstance(value, str) or value not in _INTERPOLATORS:
            raise ConfigError(
                f"setting interpolator: {_show(value)} is not supported; use one of "
                f"{', '.join(_INTERPOLATORS)}."
            )
        out["interpolator"] = _INTERPOLATORS[value]
    elif key == "resegmentRange":
        if value is None:
            out["resegment_range"] = None
            return
        if not isinstance(value, list | tuple) or len(value) not in (1, 2):
            raise ConfigError(
                f"setting resegmentRange: {_show(value)} is not valid; give [low] or "
                "[low, high] in intensity units, e.g. [-1000, 400]."
            )
        bounds = tuple(_number(key, v, minimum=-math.inf, strict=False) for v in value)
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise ConfigError(
                f"setting resegmentRange: {_show(value)} has its low end above its high end; "
                "give [low, high]."
            )
        out["resegment_range"] = bounds
    elif key == "resegmentMode":
        if not isinstance(value, str) or value != "absolute":
            raise ConfigError(
                f"setting resegmentMode: {_show(value)} is not supported; only 'absolute' "
                "(a fixed intensity range, IBSI) is. Give the range in intensity units."
            )
        out["resegment_mode"] = value
    elif key == "label":
        out["label"] = _whole(key, value, minimum=1)
    elif key == "force2D":
        out["force_2d"] = _flag(key, value)
    elif key == "geometryTolerance":
        out["geometry_tolerance"] = (
            None if value is None else _number(key, value, minimum=0.0, strict=True)
        )
    elif key == "distances":
        if (
            not isinstance(value, list | tuple)
            or [type(v) for v in value] != [int]
            or value[0] != 1
        ):
            raise ConfigError(
                f"setting distances: {_show(value)} is not supported; IBSI texture uses "
                "neighbours at distance 1 only. Use [1] or remove the key."
            )
        out["distances"] = (1,)
    elif key == "gldm_a":
        out["gldm_a"] = _number(key, value, minimum=0.0, strict=False)
    elif key == "minimumROIDimensions":
        out["minimum_roi_dimensions"] = _whole(key, value, minimum=1, maximum=3)
    elif key == "minimumROISize":
        out["minimum_roi_size"] = None if value is None else _whole(key, value, minimum=1)
    elif key == "padDistance":
        out["pad_distance"] = _whole(key, value, minimum=0)
    elif key == "normalize":
        if _flag(key, value):
            raise ConfigError(
                "setting normalize: true is not supported; intensity normalisation (PyRadiomics' "
                "z-score of the whole image) is not part of the IBSI pipeline, and CT intensities "
                "are already comparable. Set normalize: false or remove it."
            )
        out["normalize"] = False
    else:  # aggregation
        out["aggregation"] = _read_aggregation(value)


def _family_aggregations(family: str) -> tuple[str, ...]:
    module = importlib.import_module(f"medimg_core.imaging.radiomics.{family}")
    return tuple(module.AGGREGATIONS)


def _family_of(where: str, name: Any) -> str:
    if isinstance(name, str) and name in _REFUSED_CLASSES:
        raise ConfigError(f"{where} {name}: {_REFUSED_CLASSES[name]}.")
    if not isinstance(name, str) or name not in _CLASS_ALIASES:
        names = ", ".join(catalogue.FAMILIES.values())
        raise ConfigError(
            f"{where}: unknown feature class {_show(name)}; use one of {names} "
            "(PyRadiomics' class names where PyRadiomics has the class)."
        )
    return _CLASS_ALIASES[name]


def _in_family_order(pairs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    order = list(catalogue.FAMILIES)
    return tuple(sorted(pairs.items(), key=lambda item: order.index(item[0])))


def _read_aggregation(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"setting aggregation: {_show(value)} is not valid; give a mapping of texture "
            "class to IBSI aggregation, e.g. {glcm: 3D_comb, glszm: 3D}."
        )
    chosen: dict[str, str] = {}
    for name, aggregation in value.items():
        family = _family_of("setting aggregation", name)
        allowed = _family_aggregations(family)
        if not allowed:
            raise ConfigError(
                f"setting aggregation {name}: {_show(aggregation)} is not valid; {name} is not a "
                "texture class and has no aggregation. Remove it."
            )
        if aggregation not in allowed:
            raise ConfigError(
                f"setting aggregation {name}: {_show(aggregation)} is not an IBSI aggregation of "
                f"{name}; use one of {', '.join(allowed)}."
            )
        if family in chosen:
            raise ConfigError(
                f"setting aggregation: {name} is given twice (under two names); keep one."
            )
        chosen[family] = str(aggregation)
    return _in_family_order(chosen)


def _read_image_types(section: Any) -> None:
    if section is None:
        return
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"imageType: {_show(section)} is not valid; give a mapping such as 'Original: {{}}'."
        )
    for name, options in section.items():
        if name != "Original":
            raise ConfigError(
                f"imageType {_show(name)} is not supported; only 'Original' (no filter) is. "
                "Remove it."
            )
        if options not in (None, {}):
            raise ConfigError(
                f"imageType Original: {_show(options)} is not supported; per-image-type "
                "settings are not read. Move them to the 'setting' section."
            )


def _read_feature_classes(section: Any) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    if section is None or (isinstance(section, Mapping) and not section):
        return _all_classes()
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"featureClass: {_show(section)} is not valid; give a mapping of class name to a "
            "list of feature names (or null for all), e.g. {glcm: [Contrast], firstorder: null}."
        )
    chosen: dict[str, tuple[str, ...] | None] = {}
    for name, features in section.items():
        family = _family_of("featureClass", name)
        if family in chosen:
            raise ConfigError(f"featureClass: {name} is given twice (under two names); keep one.")
        if features is None or (isinstance(features, list | tuple) and not features):
            chosen[family] = None
            continue
        if not isinstance(features, list | tuple):
            raise ConfigError(
                f"featureClass {name}: {_show(features)} is not valid; give a list of feature "
                "names, or null for every feature of the class."
            )
        valid = [spec.name for spec in catalogue.catalogue(family)]
        for feature in features:
            if feature not in valid:
                raise ConfigError(
                    f"featureClass {name}: unknown feature {_show(feature)}; the {name} features "
                    f"are: {', '.join(valid)}."
                )
        chosen[family] = tuple(dict.fromkeys(str(f) for f in features))
    return _in_family_order(chosen)
