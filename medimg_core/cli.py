"""The ``medimg`` command line: features, clean, train, evaluate, predict, runs and audit.

Image studies (a folder, a ZIP of it, a MedMNIST ``.npz``; for predict also one image) are
accepted wherever a table is: their features are extracted on the way in, and a model trained on
images keeps the extraction settings in its card so that evaluate and predict re-extract new
images identically.

Every command acts as a user (:func:`cli_actor`): with local accounts configured, the account
named by the global ``--user NAME`` option or ``MEDIMG_USER`` (``--project`` chooses the
project), else the single local user. What that user's role or projects do not allow is refused
in the core, as one line; every action is recorded in the audit trail with client "cli".

Exit status: 0 on success; 2 for a problem with the input or options (a :class:`MedimgError`,
printed as one line ``medimg: error: <message>`` on stderr, and argparse usage errors); 1 when
``medimg audit verify`` finds the audit trail broken, and otherwise only for bugs, which keep
their traceback. Notes (proposed roles, excluded identifying columns, schema
warnings, image files left out) go to stderr after the work succeeds, so a failure prints only
its one line. Output files are written to a temporary file and renamed into place, so they are
never half-written.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from medimg_core.access import DEFAULT_PROJECT, SINGLE_USER, Action, Actor, Role, require
from medimg_core.errors import (
    ConfigError,
    DataError,
    MedimgError,
    PermissionDenied,
)
from medimg_core.store.audit_actions import ACTIONS
from medimg_core.workspace import workspace_path

if TYPE_CHECKING:
    import pandas as pd

    from medimg_core.imaging.feature_table import ImageTable
    from medimg_core.modelling.conformal import ConformalPredictor
    from medimg_core.modelling.models import MedimgModel
    from medimg_core.modelling.shift import FeatureShift
    from medimg_core.modelling.subgroups import SiteValidation
    from medimg_core.modelling.training import TrainingResult
    from medimg_core.store import guarded
    from medimg_core.tables.cleaning import CleaningPlan, CleaningReport
    from medimg_core.tables.loading import LoadedTable
    from medimg_core.tables.roles import Roles

__all__ = ["build_parser", "cli_actor", "main"]

# Copies of modelling constants that the parser needs, so that building it (and `medimg --help`)
# loads no modelling code; tests/unit/test_cli_startup.py checks they stay equal.
_PREDICTION_FORMATS: tuple[str, ...] = ("parquet", "csv")
"""``medimg_core.modelling.batch.FORMATS``."""
_PARTITION_ROWS = 100_000
"""``medimg_core.modelling.batch.PARTITION_ROWS``."""

MODEL_CHOICES = ("auto", "logreg", "svm", "svm_linear", "rf", "hgb", "knn", "mlp", "seed")
SUMMARY_METRICS = (
    ("accuracy", "accuracy"),
    ("roc_auc", "ROC AUC"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("ppv", "PPV"),
    ("npv", "NPV"),
)


def _write_atomic(path: Path, content: bytes) -> Path:
    """Write bytes next to ``path``, flush them to disk, then rename over ``path``."""
    target = path.expanduser().absolute()
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {target}: {exc.strerror or exc}; choose a writable output path."
        ) from exc
    return target


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, indent=2, allow_nan=False, default=str).encode("utf-8")


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    from medimg_core.store.registry import _parquet_ready

    buffer = io.BytesIO()
    _parquet_ready(frame).to_parquet(buffer)
    return buffer.getvalue()


class _ProgressLine:
    """``progress(fraction, message)`` for the terminal: one rewritten line on a TTY, else a
    line every tenth of the work (logs stay short)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last_decile = -1
        self.width = 0

    def __call__(self, fraction: float, message: str) -> None:
        percent = round(100 * min(max(fraction, 0.0), 1.0))
        line = f"[{percent:3d}%] {message}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = max(self.width, len(line))
            self.stream.flush()
            return
        decile = percent // 10
        if decile > self.last_decile:
            self.last_decile = decile
            print(line, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


_TABLE_SUFFIXES = frozenset(
    {".csv", ".tsv", ".txt", ".tab", ".xlsx", ".xlsm", ".xls", ".parquet", ".pq"}
)


def _is_image_source(spec: str) -> bool:
    """:func:`~medimg_core.imaging.feature_table.is_image_source`, without loading the imaging
    modules (pydicom, Pillow) for a ``sample:`` spec or a table file, which are never images."""
    path = Path(spec).expanduser()
    if spec.startswith("sample:") or (path.suffix.lower() in _TABLE_SUFFIXES and not path.is_dir()):
        return False
    from medimg_core.imaging.feature_table import is_image_source

    return is_image_source(spec)


def _load(spec: str, notes: list[str]) -> LoadedTable:
    from medimg_core.tables.loading import read_data

    table = read_data(spec)
    notes.extend(table.notes)
    return table


@dataclass(frozen=True)
class _Dataset:
    """A table or an image study, as the commands use it.

    ``image_settings`` is set for image studies and for Parquet files written by
    ``medimg features``: the model card keeps them so that predict re-extracts identically.
    """

    frame: pd.DataFrame
    name: str
    content_hash: str
    image_settings: dict[str, Any] | None = None
    images: ImageTable | None = None


_MAX_PROBLEM_LINES = 20


def _image_notes(table: ImageTable, notes: list[str]) -> None:
    notes.extend(table.notes)
    for problem in table.problems[:_MAX_PROBLEM_LINES]:
        notes.append(f"left out {problem}")
    if len(table.problems) > _MAX_PROBLEM_LINES:
        notes.append(f"… and {len(table.problems) - _MAX_PROBLEM_LINES} more file(s) left out")


def _refuse_image_options(args: argparse.Namespace, name: str) -> None:
    given = [
        option
        for option, attr in (
            ("--labels", "labels"),
            ("--masks", "masks"),
            ("--size", "size"),
            ("--params", "params"),
        )
        if getattr(args, attr, None) is not None
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)} apply to image data, but {name} is a table; drop "
            f"{'them' if len(given) > 1 else 'it'} or give a folder, .zip or .npz of images."
        )


def _extraction_progress(line: _ProgressLine) -> Callable[[float, str], None]:
    # Progress starts with the first extracted images: a set refused while it is being opened
    # (unsafe ZIP, one class) then prints only its one error line.
    def report(fraction: float, message: str) -> None:
        if fraction > 0:
            line(fraction, message)

    return report


def _radiomics_params(path: str | None) -> Any:
    """The radiomics settings of ``--params FILE`` (PyRadiomics' YAML layout), or None."""
    if path is None:
        return None
    from medimg_core.imaging.radiomics.settings import RadiomicsSettings

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"--params {path}: no such file; give a radiomics settings YAML in PyRadiomics' "
            "layout (setting / imageType / featureClass), e.g. docs/radiomics.example.yaml."
        )
    return RadiomicsSettings.from_yaml(file)


def _extract(
    spec: str, args: argparse.Namespace, notes: list[str], *, min_classes: int
) -> ImageTable:
    from medimg_core.imaging.feature_table import image_table

    progress = _ProgressLine(sys.stderr)
    try:
        table = image_table(
            spec,
            labels=args.labels,
            masks=args.masks,
            size=getattr(args, "size", None),
            workers=args.workers,
            progress=_extraction_progress(progress),
            min_classes=min_classes,
            radiomics=_radiomics_params(getattr(args, "params", None)),
        )
    finally:
        progress.finish()
    _image_notes(table, notes)
    return table


def _load_training_data(args: argparse.Namespace, notes: list[str]) -> _Dataset:
    """A table, a features Parquet from ``medimg features``, or an image study to extract."""
    spec = args.data
    if _is_image_source(spec):
        images = _extract(spec, args, notes, min_classes=2)
        return _Dataset(
            frame=images.frame,
            name=images.image_set.name,
            content_hash=images.image_set.content_hash,
            image_settings=images.settings,
            images=images,
        )
    table = _load(spec, notes)
    _refuse_image_options(args, table.name)
    settings = None
    if table.format == "parquet" and Path(spec).is_file():
        from medimg_core.imaging.features import read_feature_settings

        settings = read_feature_settings(spec)
        if settings is not None:
            notes.append(
                f"{table.name} holds image features written by `medimg features`; their "
                "extraction settings go into the model card, so the model can score new images."
            )
    return _Dataset(
        frame=table.frame,
        name=table.name,
        content_hash=table.content_hash,
        image_settings=settings,
    )


def _image_roles(
    frame: pd.DataFrame, args: argparse.Namespace, name: str, notes: list[str]
) -> Roles:
    """Roles of an image feature table: ``label``, ``patient_id``; ``file``/``split`` never used."""
    from medimg_core.imaging.feature_table import IMAGE_ID_COLUMNS
    from medimg_core.tables.roles import Roles, propose_roles

    label = args.label if args.label is not None else "label"
    if label not in frame.columns:
        if args.label is not None:
            _check_column(frame, label, "--label", name)
        raise DataError(
            f"{name} has no labels; put each class's images in its own sub-folder "
            "(normal/, pneumonia/, …) or pass --labels FILE with columns file and label."
        )
    if args.id is not None:
        _check_column(frame, args.id, "--id", name)
        id_column: str | None = args.id
    elif "patient_id" in frame.columns:
        id_column = "patient_id"
        notes.append("splits are grouped by 'patient_id' (override with --id)")
    else:
        id_column = None
        notes.append(
            "no patient_id: splits are by case (add patient_id to the manifest of a 3D study)"
            if "case" in frame.columns
            else "no patient_id: splits are by image (add patient_id to a labels table)"
        )
    for column in args.exclude:
        _check_column(frame, column, "--exclude", name)
    taken = {label, id_column}
    # The default label and patient columns must not become features when others are chosen.
    never = [c for c in (*IMAGE_ID_COLUMNS, "label", "patient_id") if c in frame.columns]
    proposal = propose_roles(frame.drop(columns=never))
    if proposal.identifying:
        listed = ", ".join(f"{c!r} ({why})" for c, why in proposal.identifying.items())
        notes.append(f"excluding identifying column(s) {listed}; they never reach the model")
    exclude = dict.fromkeys([*never, *args.exclude, *proposal.identifying])
    return Roles(label=label, id=id_column, exclude=tuple(c for c in exclude if c not in taken))


def _check_column(frame: pd.DataFrame, column: str, option: str, name: str) -> None:
    if column not in frame.columns:
        shown = ", ".join(repr(str(c)) for c in list(frame.columns)[:15])
        more = " …" if frame.shape[1] > 15 else ""
        raise DataError(
            f"{option} {column!r} is not a column of {name}; its columns are {shown}{more}. "
            f"Pass {option} with one of them."
        )


def _resolve_roles(
    frame: pd.DataFrame,
    args: argparse.Namespace,
    name: str,
    notes: list[str],
    *,
    need_label: bool,
) -> Roles:
    """The proposed roles, overridden by ``--label``, ``--id`` and ``--exclude``."""
    from medimg_core.tables.roles import Roles, propose_roles

    proposal = propose_roles(frame)
    label = args.label
    if label is None and proposal.label_candidates:
        label = proposal.label_candidates[0]
        notes.append(f"using {label!r} as the label (proposed; override with --label)")
    if label is None:
        if need_label:
            raise ConfigError(
                f"medimg cannot tell which column of {name} is the label; pass --label COLUMN."
            )
    else:
        _check_column(frame, label, "--label", name)
    id_column = args.id if args.id is not None else proposal.id
    if args.id is not None:
        _check_column(frame, args.id, "--id", name)
    elif id_column is not None and id_column != label:
        notes.append(f"using {id_column!r} as the patient ID (proposed; override with --id)")
    for column in args.exclude:
        _check_column(frame, column, "--exclude", name)
    roles_taken = {label, id_column}
    identifying = {c: why for c, why in proposal.identifying.items() if c not in roles_taken}
    if identifying:
        listed = ", ".join(f"{c!r} ({why})" for c, why in identifying.items())
        notes.append(f"excluding identifying column(s) {listed}; they never reach the model")
    exclude = tuple(dict.fromkeys([*args.exclude, *identifying]))
    quality = proposal.quality if proposal.quality not in roles_taken else None
    site = proposal.site if proposal.site not in roles_taken else None
    if getattr(args, "site", None) is not None:
        _check_column(frame, args.site, "--site", name)
        site = args.site
    subgroups = proposal.subgroups
    if getattr(args, "subgroup", None):
        for column in args.subgroup:
            _check_column(frame, column, "--subgroup", name)
        subgroups = tuple(dict.fromkeys(args.subgroup))
    return Roles(
        label=label,
        id=id_column if id_column != label else None,
        quality=quality,
        site=site,
        exclude=tuple(c for c in exclude if c not in roles_taken),
        subgroups=tuple(c for c in subgroups if c not in roles_taken and c != site),
    )


def _match_positive(values: pd.Series, text: str, label: str, roles: Roles | None = None) -> Any:
    """The label value whose text is ``text`` (so "1" matches the number 1), or whose class
    name is ``text`` (``--positive malignant`` with ``--class-names 0=malignant,1=benign``)."""
    import pandas as pd

    from medimg_core.modelling.models import label_key

    present = list(pd.unique(values.dropna()))
    code = roles.class_code(text) if roles is not None else None
    for value in present:
        if str(value) == text or label_key(value) == text or label_key(value) == code:
            return value.item() if hasattr(value, "item") else value
    shown = ", ".join(
        repr(str(v)) if roles is None else repr(_class_text(v, roles)) for v in present[:20]
    )
    raise ConfigError(
        f"--positive {text!r} is not a value of the label {label!r}; its values are {shown}. "
        "Pass one of them."
    )


def _class_text(value: Any, roles: Roles) -> str:
    """``0 (malignant)`` for a named code, the value alone otherwise."""
    from medimg_core.modelling.models import label_key

    name = roles.class_name(value)
    return f"{label_key(value)} ({name})" if name != label_key(value) else label_key(value)


def _class_names_option(text: str) -> tuple[tuple[str, str], ...]:
    from medimg_core.tables.roles import parse_class_names

    try:
        return parse_class_names(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _name_classes(
    roles: Roles, args: argparse.Namespace, dataset: _Dataset, notes: list[str]
) -> Roles:
    """``--class-names`` and ``--keep-feature`` added to the roles; a recognised MedMNIST
    ``.npz`` gets its published class names unless ``--class-names`` is given."""
    import pandas as pd

    from medimg_core.modelling.models import label_key

    frame, name = dataset.frame, dataset.name
    for column in args.keep_feature:
        _check_column(frame, column, "--keep-feature", name)
    names = args.class_names
    known = dataset.images.image_set.dataset if dataset.images is not None else None
    if names is None and known is not None and roles.label == "label":
        names = known.labels
        listed = ", ".join(f"{code} = {text}" for code, text in known.labels)
        notes.append(
            f"recognised {known.title}: using its published class names ({listed}); "
            "override with --class-names"
        )
    if names and roles.label is not None:
        codes = {label_key(v) for v in pd.unique(frame[roles.label].dropna())}
        unknown = [code for code, _ in names if code not in codes]
        if unknown:
            raise ConfigError(
                f"--class-names names {', '.join(repr(c) for c in unknown)}, which is not a "
                f"value of the label {roles.label!r} (its values are "
                f"{', '.join(repr(c) for c in sorted(codes)[:20])}); name those values."
            )
    return dataclasses.replace(
        roles, class_names=tuple(names or ()), keep_as_feature=tuple(args.keep_feature)
    )


def _plan_for(frame: pd.DataFrame, roles: Roles, args: argparse.Namespace) -> CleaningPlan:
    """The suggested plan (imputation, repeated records "auto"), with the user's overrides."""
    from medimg_core.tables.cleaning import suggest_plan

    plan = suggest_plan(frame, roles)
    return dataclasses.replace(
        plan,
        missing="drop" if args.drop_missing else "impute",
        duplicates=args.duplicates,
    )


def _cleaning_line(report: CleaningReport) -> str:
    removed = ", ".join(f"{rule} {n}" for rule, n in report.counts.items() if n)
    text = f"{report.n_input} rows in, {report.n_kept} kept, {report.n_removed} removed"
    return text + (f" ({removed})" if removed else "")


def _cleaning_details(report: CleaningReport) -> list[str]:
    """Class counts before and after cleaning, kept hard cases and warnings, one per line."""
    lines = []
    before, after = report.class_counts_before, report.class_counts_after
    if before:
        n_before, n_after = sum(before.values()), sum(after.values())
        shares = ", ".join(
            f"{cls} {before.get(cls, 0)} -> {after.get(cls, 0)} "
            f"({before.get(cls, 0) / max(n_before, 1):.1%} -> "
            f"{after.get(cls, 0) / max(n_after, 1):.1%})"
            for cls in dict.fromkeys([*before, *after])
        )
        lines.append(f"classes before -> after cleaning: {shares}")
    summary = report.to_dict()
    kept_repeats = summary["duplicate_records"]["kept"]
    if kept_repeats:
        lines.append(
            f"{kept_repeats} identical row(s) without a patient ID kept (expected between "
            "different patients on scores and codes; --duplicates drop removes them)"
        )
    if len(report.conflicts):
        lines.append(
            f"{len(report.conflicts)} row(s) with identical features and different labels "
            "kept as hard cases"
        )
    across = summary["identical_across_split"]
    if across["pairs"]:
        lines.append(
            f"{across['pairs']} test row(s) identical to a development row of the file's own "
            f"split ({across['opposite_label']} with the opposite label), kept"
        )
    lines.extend(note for note in report.notes if note.startswith("Warning:"))
    return lines


def _metric_text(metrics: dict[str, Any] | None, key: str) -> str:
    m = (metrics or {}).get(key)
    if not m or m.get("value") is None:
        return "n/a"
    low, high = m["ci95"]
    ci = f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return f"{m['value']:.3f}{ci}"


def _metrics_table(
    columns: Sequence[tuple[str, dict[str, Any] | None]], positive: Any = None
) -> list[str]:
    """Rows of the clinical metrics, one column per partition (``Evaluation.to_dict()``).

    ``positive`` is the positive class as users know it ("malignant"): sensitivity,
    specificity, PPV and NPV say they are for it.
    """
    from medimg_core.modelling.evaluation import CLASS_METRICS

    names = [
        (key, f"{name} for {positive}" if positive is not None and key in CLASS_METRICS else name)
        for key, name in SUMMARY_METRICS
    ]
    width = max(12, *(len(name) + 2 for _, name in names))
    header = f"  {'metric':<{width}}" + "".join(f"{title:<28}" for title, _ in columns)
    lines = [header.rstrip()]
    for key, name in names:
        row = f"  {name:<{width}}" + "".join(f"{_metric_text(m, key):<28}" for _, m in columns)
        lines.append(row.rstrip())
    return lines


def _positive_text(model: MedimgModel) -> str:
    """``malignant (code 0)`` for a named code, the positive class alone otherwise."""
    from medimg_core.modelling.models import label_key

    shown = model.display_name(model.positive_class)
    code = label_key(model.positive_class)
    return f"{shown} (code {code})" if str(shown) != code else code


def _interval_notes(result: TrainingResult) -> list[str]:
    """Which shown intervals are not percentile bootstrap ones, and how they were obtained.

    A perfect (or null) figure has a bootstrap interval of zero width; it is replaced by an
    exact or rank-based one, and the reader is told which.
    """
    notes = []
    for label, evaluation in (("cross-validated", result.cv), ("test", result.test)):
        if evaluation is None:
            continue
        for key, name in SUMMARY_METRICS:
            metric = evaluation.metrics.get(key)
            if metric is not None and metric.method and "bootstrap" not in metric.method:
                notes.append(f"  {name} ({label}): {metric.method}")
    if not notes:
        return []
    return ["Intervals not from the bootstrap (at 0 or 1 it collapses to a point):", *notes]


def _train_summary(
    result: TrainingResult,
    report: CleaningReport | None,
    name: str,
    threshold_method: str,
    model_dir: Path,
    run_id: str | None,
) -> str:
    from medimg_core.modelling.calibration import calibration_card, calibration_line
    from medimg_core.modelling.evaluation import format_metric
    from medimg_core.reporting.summaries import stored_data_text
    from medimg_core.store.persistence import test_split_source

    model, split = result.model, result.split
    lines = [f"Data: {name}"]
    if report is not None:
        lines.append(f"  cleaning: {_cleaning_line(report)}")
        lines.extend(f"    {line}" for line in _cleaning_details(report))
    else:
        lines.append(f"  cleaning: skipped (--no-clean), {split.n_dev + split.n_test} rows used")
    if split.grouped_by:
        unit = (
            f"grouped by patient ({split.grouped_by}): {split.patients_dev} / "
            f"{split.patients_test} patients"
        )
    else:
        unit = "by row (no patient ID column)"
    lines.append(
        f"Split: {split.n_dev} development / {split.n_test} test rows, {unit}; "
        f"{split.cv_folds}-fold cross-validation on development"
    )
    test_unit = "images" if name.lower().endswith(".npz") else "rows"
    lines.append(f"Test set: {split.test_text(source=test_split_source(name), unit=test_unit)}")
    if model.is_binary:
        lines.append(
            f"Positive class: {_positive_text(model)}; threshold {model.threshold:.3f} "
            f"({threshold_method}, chosen on out-of-fold development predictions)"
        )
    else:
        lines.append(
            f"Classes: {', '.join(_class_text(c, model.roles) for c in model.classes)} "
            "(multi-class)"
        )
    pca = f", PCA {model.config.pca}" if model.config.pca else ""
    lines.append(f"Model: {model.kind} (scaling {model.config.scaling}{pca})")
    if result.leaderboard:
        lines.append("Leaderboard (cross-validated ROC AUC, 95% CI):")
        for row in result.leaderboard:
            auc = row.roc_auc.to_dict()
            ci = auc["ci95"]
            value = "n/a" if auc["value"] is None else f"{auc['value']:.3f}"
            interval = f" ({ci[0]:.3f}–{ci[1]:.3f})" if None not in ci else ""
            mark = "  <- chosen" if row.chosen else ""
            lines.append(f"  {row.kind:<11}{value}{interval}{mark}")
            if row.note:
                lines.append(f"             ({row.note})")
    if result.selection_free is not None:
        lines.append(
            f"Selection-free CV ROC AUC of auto: {format_metric(result.selection_free)} "
            f"(BBC-CV over {len(result.leaderboard)} models). The chosen model's own CV ROC "
            "AUC below is optimistic: it was chosen for scoring best on the same folds."
        )
    lines.append("Metrics with 95% CIs:")
    lines.extend(
        _metrics_table(
            [
                ("cross-validated (dev)", result.cv.to_dict()),
                ("held-out test", result.test.to_dict() if result.test is not None else None),
            ],
            model.display_name(model.positive_class) if model.is_binary else None,
        )
    )
    if model.is_binary:
        lines.append(
            "Calibration (slope 1 and intercept 0 = probabilities can be taken at face value):"
        )
        lines.append("  " + calibration_line("cv", calibration_card(result.cv)))
        if result.test is not None:
            lines.append("  " + calibration_line("test", calibration_card(result.test)))
        lines.extend(_decision_lines(result))
    lines.extend(_conformal_lines(result))
    lines.extend(_reader_lines(result))
    lines.extend(_interval_notes(result))
    if result.warnings:
        lines.append("Warnings:")
        lines.extend(f"  - {w}" for w in result.warnings)
    lines.append(f"Saved to {model_dir} (run {run_id}).")
    card_part = {
        "roles": model.roles.to_dict(),
        "features": {"feature_columns": list(model.feature_columns)},
    }
    lines.append(stored_data_text(card_part))
    return "\n".join(lines)


def _cmd_clean(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store import guarded
    from medimg_core.tables.partitioned import partition_reason

    reason = partition_reason(args.data, requested=args.partitioned)
    if reason is not None:
        return _clean_partitioned(args, notes, reason)
    if args.partitioned:
        notes.append("built-in samples are small: cleaned in memory, written as one file")
    table = _load(args.data, notes)
    frame = table.frame
    roles = _resolve_roles(frame, args, table.name, notes, need_label=False)
    plan = _plan_for(frame, roles, args)
    report = guarded.clean(
        args.actor,
        frame,
        roles,
        plan,
        client="cli",
        content_hash=table.content_hash,
        require_label=roles.label is not None,
    )
    payload = {
        "dataset": {"name": table.name, "hash": table.content_hash},
        "roles": roles.to_dict(),
        **report.to_dict(),
    }
    _write_atomic(Path(args.report), _json_bytes(payload))
    out = _write_atomic(Path(args.output), _parquet_bytes(report.data))
    print(f"Cleaning {table.name}: {_cleaning_line(report)}")
    _print_cleaning_details(report)
    print(f"Wrote {out} and {Path(args.report).expanduser().absolute()}.")
    return 0


def _print_cleaning_details(report: CleaningReport) -> None:
    """The indented lines under ``medimg clean``'s summary (both paths)."""
    if report.dropped_columns:
        dropped = ", ".join(f"{c} ({why})" for c, why in report.dropped_columns.items())
        print(f"  dropped columns: {dropped}")
    for line in _cleaning_details(report):
        print(f"  {line}")
    missing = {c: n for c, n in report.missing_by_column.items() if n}
    if missing:
        shown = ", ".join(
            f"{c} {n} ({n / max(report.n_input, 1):.0%})"
            for c, n in sorted(missing.items(), key=lambda item: -item[1])[:8]
        )
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        fate = "removed" if report.plan.missing == "drop" else "kept; the model imputes"
        print(f"  missing values per predictor: {shown}{more} ({fate})")
    if len(report.flags):
        print(f"  {len(report.flags)} cell(s) flagged (kept); see the report")


_ROLE_SAMPLE_ROWS = 20_000


def _clean_partitioned(args: argparse.Namespace, notes: list[str], reason: str) -> int:
    """``medimg clean`` for large tables: partition by partition, kept rows as a Parquet folder."""
    from medimg_core.store import guarded
    from medimg_core.tables.partitioned import clean_partitioned, open_partitioned, sample_rows

    table = open_partitioned(args.data)
    notes.extend(table.notes)
    sample = sample_rows(table, _ROLE_SAMPLE_ROWS, seed=0).reset_index(drop=True)
    if len(sample) < table.n_rows and not (args.label and args.id):
        notes.append(
            f"column roles were proposed from a random sample of {len(sample):,} of "
            f"{table.n_rows:,} rows; pass --label and --id to set them yourself"
        )
    roles = _resolve_roles(sample, args, table.name, notes, need_label=False)
    plan = _plan_for(sample, roles, args)
    with guarded.audited(args.actor, Action.CLEAN, client="cli", object=table.content_hash):
        result = clean_partitioned(
            table, roles, plan, Path(args.output), require_label=roles.label is not None
        )
    payload = {
        "dataset": {"name": table.name, "hash": table.content_hash},
        "roles": roles.to_dict(),
        **result.to_dict(),
    }
    _write_atomic(Path(args.report), _json_bytes(payload))
    removed = ", ".join(f"{rule} {n}" for rule, n in result.counts.items() if n)
    print(
        f"Cleaning {table.name} in {table.n_partitions} partition(s) on {result.where} "
        f"({reason}): {result.n_input} rows in, {result.n_kept} kept, {result.n_removed} "
        f"removed" + (f" ({removed})" if removed else "")
    )
    report = result.as_report()
    _print_cleaning_details(report)
    print(
        f"Wrote the kept rows as a partitioned Parquet folder {result.output_dir} "
        f"({len(result.parts)} part(s), in input order) and "
        f"{Path(args.report).expanduser().absolute()}."
    )
    return 0


def _decision_lines(result: TrainingResult) -> list[str]:
    """Decision curve read at the saved threshold, per partition (two-class models)."""
    from medimg_core.modelling.decision import evaluation_curve, net_benefit_at

    model = result.model
    positive = str(model.display_name(model.positive_class))
    lines = []
    for name, ev in (("cross-validated (dev)", result.cv), ("held-out test", result.test)):
        curve = evaluation_curve(ev, chosen_threshold=model.threshold)
        if curve is not None and curve.chosen_threshold is not None:
            lines.append(f"  {name}: {net_benefit_at(curve).sentence(positive)}")
    if lines:
        lines.insert(0, "Decision curve (net benefit; treating no one scores 0):")
    return lines


def _conformal_lines(result: TrainingResult) -> list[str]:
    """Prediction sets at 90% and 95%: the coverage on the test cases next to the target."""
    from medimg_core.modelling.conformal import CARD_CONFIDENCES, fit_scores, summarise_sets

    if result.cv.n == 0:
        return []
    lines = [
        "Prediction sets (conformal, calibrated per class on the cross-validated development "
        "cases; `medimg predict` writes each case's set):"
    ]
    for confidence in CARD_CONFIDENCES:
        fitted = fit_scores(
            result.cv.y_true, result.cv.y_score, result.cv.class_names, confidence=confidence
        )
        if result.test is not None:
            summary = summarise_sets(fitted, result.test.y_true, result.test.y_score)
        else:
            summary = summarise_sets(fitted, [], [])
        sizes = summary.set_sizes
        lines.append(
            f"  {summary.sentence} Sets: {sizes['single']} one class, "
            f"{sizes['both/uncertain']} uncertain, {sizes['empty']} empty."
        )
        lines.extend(f"  - {note}" for note in fitted.notes())
    lines.append(
        "  (Cross-conformal: coverage close to the target, not exactly guaranteed; for new "
        "cases from the same population.)"
    )
    return lines


def _reader_lines(result: TrainingResult) -> list[str]:
    """The with / without table of the reader-assessment features (``--reader``)."""
    comparison = result.without_reader
    if comparison is None:
        return []
    label = comparison.label
    lines = [f"With and without {label} (a reader's assessment), 95% CIs:"]
    if comparison.cv is None:
        return [*lines, f"  {comparison.note}"]
    columns: list[tuple[str, dict[str, Any] | None]] = [
        (f"with {label} (CV)", result.cv.to_dict()),
        (f"without {label} (CV)", comparison.cv.to_dict()),
    ]
    if result.test is not None:
        columns += [
            (f"with {label} (test)", result.test.to_dict()),
            (
                f"without {label} (test)",
                comparison.test.to_dict() if comparison.test is not None else None,
            ),
        ]
    model = result.model
    lines.extend(
        _metrics_table(
            columns, model.display_name(model.positive_class) if model.is_binary else None
        )
    )
    lines.append(f"  {comparison.note}")
    return lines


def _reader_roles(roles: Roles, reader: Sequence[str], frame: pd.DataFrame, name: str) -> Roles:
    """``roles`` with ``--reader`` columns marked as a reader's assessment (they stay features)."""
    if not reader:
        return roles
    for column in reader:
        _check_column(frame, column, "--reader", name)
        if column in roles.non_feature_columns():
            raise ConfigError(
                f"--reader {column!r} is not a model feature (it is the label, the ID or an "
                "excluded column); a reader's assessment must be one of the features."
            )
    return dataclasses.replace(roles, reader=tuple(dict.fromkeys(reader)))


def _cmd_train(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store import guarded
    from medimg_core.store.model_files import remove_stale_staging
    from medimg_core.store.persistence import _refuse_foreign_target

    actor: Actor = args.actor
    # Refuse a bad output directory, or a user who may not train, before minutes of training.
    target = Path(args.output).expanduser().absolute()
    _refuse_foreign_target(target)
    # Folders an interrupted save (a killed `medimg train`) left beside the output.
    remove_stale_staging(target.parent)
    with guarded.audited(actor, Action.TRAIN, client="cli") as entry:
        return _train_as(actor, args, notes, entry)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the block always returns)


def _train_as(
    actor: Actor, args: argparse.Namespace, notes: list[str], entry: guarded.AuditHandle
) -> int:
    from medimg_core.modelling.guards import repeated_patients_warning
    from medimg_core.modelling.models import ModelConfig
    from medimg_core.modelling.subgroups import check_sites, leave_one_site_out
    from medimg_core.modelling.training import train
    from medimg_core.modelling.validation import ValidationConfig
    from medimg_core.store.runs import save_run
    from medimg_core.tables.cleaning import CleaningPlan, clean

    dataset = _load_training_data(args, notes)
    frame = dataset.frame
    if dataset.image_settings is not None:
        roles = _image_roles(frame, args, dataset.name, notes)
    else:
        roles = _resolve_roles(frame, args, dataset.name, notes, need_label=True)
    roles = _reader_roles(roles, args.reader, frame, dataset.name)
    roles = _name_classes(roles, args, dataset, notes)
    assert roles.label is not None
    report: CleaningReport | None = None
    if args.no_clean:
        # Nothing is removed without cleaning, so missing values are imputed by the model.
        plan = CleaningPlan(missing="impute")
        data = frame
    else:
        plan = _plan_for(frame, roles, args)
        report = clean(frame, roles, plan)
        data = report.data
    positive = (
        _match_positive(data[roles.label], args.positive, roles.label, roles)
        if args.positive is not None
        else None
    )
    config = ModelConfig(
        model=args.model,
        scaling=args.scaling,
        pca=args.pca,
        class_weight=args.class_weight,
        seed=args.seed,
    )
    validation = ValidationConfig(
        test_size=args.test_size,
        cv=args.cv,
        threshold=args.threshold,
        target_sensitivity=args.target_sensitivity,
        n_boot=args.n_boot,
        predefined_test=(
            _predefined_test(data, notes) if dataset.image_settings is not None else None
        ),
    )
    repeats = repeated_patients_warning(data, roles)
    if repeats:
        # Said before the models are fitted, so the user can stop and declare the ID.
        print(f"medimg: warning: {repeats}", file=sys.stderr, flush=True)
    by_site = getattr(args, "validation", "standard") == "leave-one-site-out"
    if by_site:
        check_sites(data, roles)  # refused now, not after minutes of training
    progress = _ProgressLine(sys.stderr)
    try:
        result = train(
            data,
            roles,
            config=config,
            validation=validation,
            positive=positive,
            plan=plan,
            progress=progress,
        )
    finally:
        progress.finish()
    site_validation: SiteValidation | None = None
    if by_site:
        site_progress = _ProgressLine(sys.stderr)
        try:
            site_validation = leave_one_site_out(
                data,
                roles,
                config,
                validation,
                positive=result.model.positive_class,
                plan=plan,
                progress=site_progress,
            )
        finally:
            site_progress.finish()
    saved = save_run(
        actor,
        result,
        Path(args.output),
        data=data,
        cleaning=report,
        dataset_name=dataset.name,
        validation=validation,
        image_settings=dataset.image_settings,
        site_validation=site_validation,
    )
    model_dir, run_id = saved.model_dir, saved.run_id
    entry.object = run_id
    print(_train_summary(result, report, dataset.name, args.threshold, model_dir, run_id))
    for line in _group_lines(saved.card, result.model):
        print(line)
    print(_actor_line(actor))
    print(_encryption_line())
    return 0


def _group_lines(card: dict[str, Any], model: MedimgModel) -> list[str]:
    """The training summary's subgroup and leave-one-site-out sections (from the card)."""
    lines: list[str] = []
    metric = "roc_auc" if model.is_binary else "accuracy"
    shown = "ROC AUC" if model.is_binary else "accuracy"

    for column, entry in (card.get("subgroups") or {}).items():
        lines.append(f"Subgroups by {column} ({entry['grouping']}), {shown} with 95% CI:")
        for partition, title in (("cv", "cross-validated"), ("test", "held-out test")):
            rows = entry.get(partition) or []
            if rows:
                parts = [
                    f"{r['group']} (n={r['n']}) {_metric_text(r['metrics'], metric)}" for r in rows
                ]
                lines.append(f"  {title}: " + "; ".join(parts))
        notes = {f"{r['group']}: {r['note']}" for p in ("cv", "test") for r in entry.get(p) or []}
        lines.extend(f"    note {n}" for n in sorted(notes) if not n.endswith(": "))
    site = card.get("leave_one_site_out")
    if site:
        lines.append(
            f"Leave-one-site-out validation by {site['site_column']} ({shown} with 95% CI on "
            "each held-out site):"
        )
        for row in site["per_site"]:
            lines.append(f"  {row['group']} (n={row['n']}): {_metric_text(row['metrics'], metric)}")
        if site.get("pooled"):
            lines.append(f"  pooled: {_metric_text(site['pooled'], metric)}")
        lines.extend(f"  {note}" for note in site["notes"])
    return lines


def _actor_line(actor: Actor) -> str:
    project = actor.project or DEFAULT_PROJECT
    if actor == SINGLE_USER:
        return (
            f"Recorded in project {project!r} as the single local user (no local accounts are "
            "configured)."
        )
    return (
        f"Recorded in project {project!r} with {actor.username} as owner; members of that "
        "project can open it."
    )


def _encryption_line() -> str:
    from medimg_core.encryption import current_key_info

    info = current_key_info(create=False)
    where = "not yet created" if info is None else info.describe()
    return (
        "Encrypted at rest: the model files, the stored cases, the stored copy of the "
        f"training table and images unpacked from a ZIP ({where}). Not encrypted: card.json "
        "and the run registry."
    )


def _predefined_test(data: pd.DataFrame, notes: list[str]) -> tuple[bool, ...] | None:
    """The test split a MedMNIST ``.npz`` came with (its ``split`` column), else None."""
    if "split" not in data.columns:
        return None
    test = data["split"].astype(str).eq("test")
    if not test.any():
        return None
    notes.append(
        f"using the data's own split: {int(test.sum())} 'test' rows held out, the others "
        "(train and val) form the development data; --test-size is ignored"
    )
    return tuple(bool(v) for v in test)


def _load_scoring_data(
    args: argparse.Namespace, card: dict[str, Any], notes: list[str], *, need_labels: bool
) -> _Dataset:
    """New cases for a saved model: a table, or images re-extracted with the card's settings."""
    if not _is_image_source(args.data):
        table = _load(args.data, notes)
        _refuse_image_options(args, table.name)
        return _Dataset(frame=table.frame, name=table.name, content_hash=table.content_hash)
    from medimg_core.imaging.feature_table import features_for_prediction

    progress = _ProgressLine(sys.stderr)
    try:
        images = features_for_prediction(
            card,
            args.data,
            labels=args.labels,
            masks=args.masks,
            workers=args.workers,
            progress=_extraction_progress(progress),
            require_labels=need_labels and args.label is None,
        )
    finally:
        progress.finish()
    _image_notes(images, notes)
    return _Dataset(
        frame=images.frame,
        name=images.image_set.name,
        content_hash=images.image_set.content_hash,
        image_settings=images.settings,
        images=images,
    )


def _cmd_evaluate(args: argparse.Namespace, notes: list[str]) -> int:
    # Refused (and audited) before the data are read; the validation is audited when done.
    from medimg_core.modelling.calibration import calibration_card, calibration_line
    from medimg_core.modelling.schema import check_schema
    from medimg_core.reporting.external import (
        OPTIMISM_NOTE,
        save_recalibrated_run,
        validate_external,
    )
    from medimg_core.store import guarded
    from medimg_core.store.persistence import load_model

    guarded.check(args.actor, Action.EXTERNAL_VALIDATION, client="cli")
    loaded = load_model(Path(args.model_dir))
    model = loaded.model
    table = _load_scoring_data(args, loaded.card, notes, need_labels=True)
    frame = table.frame
    label = model.roles.label
    if args.label is not None and args.label != label:
        _check_column(frame, args.label, "--label", table.name)
        if label in frame.columns:
            raise ConfigError(
                f"{table.name} has both --label {args.label!r} and the model's label column "
                f"{label!r}; drop one of them or omit --label."
            )
        frame = frame.rename(columns={args.label: label})
    if label is None or label not in frame.columns:
        raise DataError(
            f"{table.name} has no label column {label!r}, which external validation needs; "
            "add it or name the label column with --label COLUMN."
        )
    unlabelled = int(frame[label].isna().sum())
    if unlabelled:
        notes.append(f"{unlabelled} row(s) without a label are left out of the evaluation")
        frame = frame[frame[label].notna()]
    for warning in check_schema(model, frame).warnings:
        notes.append(f"warning: {warning}")
    if args.recalibrate and not model.is_binary:
        raise ConfigError(
            "--recalibrate applies to two-class models; this one has "
            f"{len(model.classes)} classes. Leave --recalibrate out."
        )
    run_id = _run_id_of(loaded.directory, args.actor)
    validation = validate_external(
        args.actor,
        loaded,
        frame,
        dataset_name=table.name,
        dataset_hash=table.content_hash,
        client="cli",
        run_id=run_id,
        n_boot=args.n_boot,
        recalibrate=args.recalibrate,
    )
    evaluation = validation.evaluation
    calibration = calibration_card(evaluation)
    departures = list(validation.result["warnings"])
    recalibrated = None
    if args.recalibrate:
        recalibrated = save_recalibrated_run(
            args.actor,
            loaded,
            evaluation,
            dataset_name=table.name,
            client="cli",
            parent_run_id=run_id,
            evaluation_id=validation.evaluation_id,
        )
    payload = {
        **validation.result,
        "evaluation_id": validation.evaluation_id,
        "recalibrated_run": (
            {"run_id": recalibrated.run_id, "model_dir": str(recalibrated.model_dir)}
            if recalibrated is not None
            else None
        ),
        "metrics": evaluation.to_dict(),
        "positive_class": model.positive_class,
        "n": evaluation.n,
        "partition": "external",
        "threshold": evaluation.threshold,
        "class_names": list(evaluation.class_names),
        "confusion": evaluation.confusion.tolist(),
        "bootstrap_unit": "patient" if evaluation.groups_resampled else "row",
        "calibration": calibration,
        "warnings": departures,
        "dataset": {"name": table.name, "hash": table.content_hash},
        "model": {"directory": str(loaded.directory), "sha256": loaded.card.get("model_sha256")},
    }
    out = _write_atomic(Path(args.json), _json_bytes(payload))
    lines = [
        f"External validation of {loaded.directory} on {table.name}: {evaluation.n} cases, "
        f"threshold {evaluation.threshold:.3f}, positive class {_positive_text(model)}",
        "Metrics with 95% CIs (no refit):",
        *_metrics_table(
            [
                ("external", evaluation.to_dict()),
                ("held-out test at training", (loaded.card.get("metrics") or {}).get("test")),
            ],
            model.display_name(model.positive_class) if model.is_binary else None,
        ),
        *([f"  {calibration_line('external', calibration)}"] if calibration is not None else []),
        *_shift_lines(validation.shift),
        *(["Warnings:", *(f"  - {w}" for w in departures)] if departures else []),
        *validation.notes,
        *(
            [
                f"Recorded as evaluation {validation.evaluation_id} of run {run_id} "
                f"(see `medimg runs --show {run_id}`)."
            ]
            if validation.evaluation_id
            else []
        ),
        *([recalibrated.sentence, f"  {OPTIMISM_NOTE}"] if recalibrated is not None else []),
        f"Wrote {out}.",
    ]
    print("\n".join(lines))
    return 0


SHIFT_LINES = 5
"""Features listed by ``medimg evaluate`` under "Feature shift" (largest first)."""


def _shift_lines(shift: Sequence[FeatureShift]) -> list[str]:
    """The largest feature shifts, one line each, with the convention."""
    from medimg_core.modelling.shift import NOTABLE_SHIFT, SMALL_SHIFT

    if not shift:
        return []
    flagged = sum(1 for s in shift if s.flag in ("small", "notable"))
    lines = [
        f"Feature shift vs development ({flagged} of {len(shift)} feature(s) shifted; "
        f"|SMD| > {SMALL_SHIFT:g} small, > {NOTABLE_SHIFT:g} notable), largest first:"
    ]
    lines += [f"  {s.feature}: {s.sentence}" for s in shift[:SHIFT_LINES]]
    return lines


def _cmd_predict(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store import guarded

    with guarded.audited(args.actor, Action.PREDICT, client="cli") as entry:
        return _predict_as(args, notes, entry)
    raise AssertionError("unreachable")  # pragma: no cover


def _predict_as(args: argparse.Namespace, notes: list[str], entry: guarded.AuditHandle) -> int:
    from medimg_core.modelling.conformal import (
        set_column_name,
        set_size_counts,
        sets_sentence,
        with_prediction_sets,
    )
    from medimg_core.modelling.image_prediction import image_predictions
    from medimg_core.modelling.prediction import Abstention, predict, stamp_export
    from medimg_core.privacy import to_safe_csv
    from medimg_core.store.persistence import load_model

    loaded = load_model(Path(args.model_dir))
    entry.object = run_id = _run_id_of(loaded.directory, args.actor)
    model = loaded.model
    conformal = _prediction_sets_for(loaded.model, loaded.directory, args.confidence, notes)
    if _writes_parts(args):
        return _predict_in_parts(args, notes, loaded.model, loaded.card, run_id, conformal)
    if args.output_format is not None or args.rows_per_part is not None:
        raise ConfigError(
            "--format and --rows-per-part apply to predictions written as a folder of parts; "
            "end -o with / (or add --partitioned), or leave them out for one CSV file."
        )
    table = _load_scoring_data(args, loaded.card, notes, need_labels=False)
    abstain = Abstention(ood=args.abstain_ood, band=args.abstain_band)
    if table.images is not None:
        predictions = image_predictions(
            model, table.images, explain_top=args.explain, abstain=abstain
        )
    else:
        predictions = predict(model, table.frame, explain_top=args.explain, abstain=abstain)
    for warning in predictions.schema.warnings:
        notes.append(f"warning: {warning}")
    frame = predictions.frame
    if conformal is not None:
        frame = with_prediction_sets(frame, model, conformal)
    exported = stamp_export(
        frame,
        run_id=run_id,
        model_sha256=loaded.card.get("model_sha256"),
        threshold=predictions.threshold if model.is_binary else None,
        positive_class=predictions.positive_class,
    )
    out = _write_atomic(Path(args.output), to_safe_csv(exported))
    n = len(predictions.frame)
    if model.is_binary:
        positives = int((predictions.frame["decision"] == predictions.positive_class).sum())
        detail = (
            f"{positives} called {_positive_text(model)} at threshold {predictions.threshold:.3f}"
        )
    else:
        detail = "most probable class per case"
    print(f"Wrote {n} prediction(s) to {out} ({detail}).")
    for note in predictions.notes:
        print(f"  {note}")
    if conformal is not None:
        sizes = set_size_counts(frame[set_column_name(conformal.confidence)])
        print(f"  {sets_sentence(conformal.confidence, sizes)}")
    return 0


def _prediction_sets_for(
    model: MedimgModel, directory: Path, confidence: float, notes: list[str]
) -> ConformalPredictor | None:
    """Prediction sets calibrated on the run's development cases; None (with a note) when
    the model was saved without its cases. A cases file that is there but damaged is refused
    (ModelFileError), not taken for a missing one."""
    from medimg_core.modelling.conformal import fit_conformal
    from medimg_core.store.cases import CASES_NAME, load_cases

    if not (directory / CASES_NAME).exists():
        notes.append(
            "note: no prediction-set column: this model was saved without its cases, which "
            "calibrate the sets; retrain it with this version of medimg to get them."
        )
        return None
    return fit_conformal(model, load_cases(directory), confidence=confidence)


_TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".parquet", ".pq"})


def _is_table_collection(spec: str) -> bool:
    """A glob, or a folder holding only table files (CSV or Parquet parts): read in parts."""
    if spec.startswith("sample:"):
        return False
    if any(ch in spec for ch in "*?["):
        return True
    path = Path(spec).expanduser()
    if not path.is_dir():
        return False
    entries = [p for p in path.iterdir() if not p.name.startswith((".", "_"))]
    return bool(entries) and all(
        p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES for p in entries
    )


def _writes_parts(args: argparse.Namespace) -> bool:
    """Predictions go to a folder of parts: asked for, OUT is a folder, or DATA is several
    table files."""
    out = str(args.output)
    return (
        args.partitioned
        or out.endswith(("/", os.sep))
        or Path(out).expanduser().is_dir()
        or _is_table_collection(args.data)
    )


def _predict_in_parts(
    args: argparse.Namespace,
    notes: list[str],
    model: MedimgModel,
    card: Mapping[str, Any],
    run_id: str | None,
    conformal: ConformalPredictor | None = None,
) -> int:
    """``medimg predict`` over a large table: one task per partition, a folder of parts."""
    from medimg_core.modelling.batch import PARTITION_ROWS, predict_partitioned

    if args.data.startswith("sample:"):
        raise ConfigError(
            f"{args.data} is a built-in sample, not a file; predictions in parts read CSV or "
            "Parquet files. Give -o PREDICTIONS.csv to score the sample into one file."
        )
    if _is_image_source(args.data) and not _is_table_collection(args.data):
        raise ConfigError(
            f"{args.data} holds images; predictions on images are written to one CSV file. "
            "Give -o PREDICTIONS.csv (without --partitioned)."
        )
    _refuse_image_options(args, args.data)
    line = _ProgressLine(sys.stderr)
    try:
        result = predict_partitioned(
            model,
            args.data,
            args.output,
            explain_k=args.explain,
            abstain_ood=args.abstain_ood,
            abstain_band=args.abstain_band,
            output_format=args.output_format or "parquet",
            rows_per_partition=args.rows_per_part or PARTITION_ROWS,
            run_id=run_id,
            model_sha256=card.get("model_sha256"),
            progress=lambda done, total: line(
                done / total, f"Predicted {done} of {total} partition(s)"
            ),
            conformal=conformal,
        )
    finally:
        line.finish()
    notes.extend(result.reading_notes)
    notes.extend(f"warning: {w}" for w in result.schema.warnings)
    if model.is_binary and result.threshold is not None:
        detail = (
            f"{result.positives:,} called {_positive_text(model)} at threshold "
            f"{result.threshold:.3f}"
        )
    else:
        detail = "most probable class per case"
    kind = "Parquet" if result.format == "parquet" else "CSV, safe to open in a spreadsheet"
    print(
        f"Wrote {result.rows:,} prediction(s) in {len(result.parts)} part(s) ({kind}) to "
        f"{result.output}{os.sep} ({detail})."
    )
    print(
        f"  Read {result.source} in {result.partitions} partition(s); computed on {result.where}."
    )
    for note in result.notes:
        print(f"  {note}")
    return 0


def _run_id_of(model_dir: Path, actor: Actor) -> str | None:
    """The run of ``actor``'s current project whose model is saved in ``model_dir`` (None when
    not recorded there)."""
    from medimg_core.store.registry import Registry

    target = model_dir.expanduser().absolute()
    if (
        not os.environ.get("MEDIMG_DATABASE_URL")
        and not (workspace_path() / "registry.db").is_file()
    ):
        return None  # no registry yet: do not create one just to look
    try:
        with Registry() as registry:
            runs = registry.list_runs(actor)
    except MedimgError:
        return None
    return next((r.id for r in runs if Path(r.model_dir).absolute() == target), None)


def _band(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two probabilities LOW,HIGH such as 0.4,0.6, got {text!r}"
        ) from None
    if not 0.0 <= low < high <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected 0 <= LOW < HIGH <= 1 (for example 0.4,0.6), got {text!r}"
        )
    return low, high


def _cmd_features(args: argparse.Namespace, notes: list[str]) -> int:
    # Reading an image set into medimg is an upload: refused before any image is read.
    from medimg_core.store import guarded

    with guarded.audited(args.actor, Action.UPLOAD, client="cli") as entry:
        return _features_as(args, notes, entry)
    raise AssertionError("unreachable")  # pragma: no cover


def _features_as(args: argparse.Namespace, notes: list[str], entry: guarded.AuditHandle) -> int:
    output = Path(args.output).expanduser().absolute()
    images = _extract(args.images, args, notes, min_classes=0)
    entry.object = images.image_set.content_hash
    features = images.features
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {output}: {exc.strerror or exc}; choose a writable output path."
        ) from exc
    tmp = Path(tmp_name)
    try:
        features.to_parquet(tmp)
        os.replace(tmp, output)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {output}: {exc.strerror or exc}; choose a writable output path."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    counts = images.image_set.class_counts
    classes = ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "no labels"
    if features.settings.get("kind") == "radiomics":
        print(
            f"Extracted {len(features.feature_names)} IBSI radiomic features from "
            f"{len(features.frame)} cases of {images.image_set.name} ({classes}); "
            f"{len(images.problems)} file(s) or case(s) left out."
        )
    else:
        size = features.settings.get("size") or ["?", "?"]
        print(
            f"Extracted {len(features.feature_names)} features from {len(features.frame)} "
            f"images of {images.image_set.name} at {size[0]}×{size[1]} ({classes}); "
            f"{len(images.problems)} file(s) left out."
        )
    print(f"Wrote {output} (the extraction settings are stored in the file).")
    return 0


def _cmd_runs(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.reporting.comparison import selection_note
    from medimg_core.store import guarded
    from medimg_core.store.registry import Registry

    actor: Actor = args.actor
    if args.delete is not None:
        deleted = guarded.delete_run(actor, args.delete, client="cli")
        print(deleted.note)
        return 0
    if args.show is not None:
        return _show_run(actor, args.show)
    with Registry() as registry:
        runs = registry.list_runs(actor)
        url = registry.url
    if not runs:
        print(
            f"No runs recorded yet in project {actor.project!r} in {url}. Train one with "
            "`medimg train`."
        )
        return 0
    print(f"Runs of project {actor.project!r}, newest first:")
    _print_table([r.summary() for r in runs])
    note = selection_note(runs)
    if note is not None:
        print(f"\nNote: {note}")
    return 0


def _show_run(actor: Actor, run_id: str) -> int:
    """``medimg runs --show RUN_ID``: the run's summary and its recorded external evaluations."""
    from medimg_core.reporting.external import evaluation_history
    from medimg_core.store import guarded

    record = guarded.open_run(actor, run_id, client="cli")
    evaluations = guarded.list_evaluations(actor, run_id)
    print(f"Run {record.id} of project {record.project!r}:")
    _print_table([record.summary()])
    parent = (record.card or {}).get("recalibrated_from")
    if parent or (record.card or {}).get("recalibration"):
        recal = (record.card or {}).get("recalibration") or {}
        print(
            f"\nRecalibrated version of run {parent or 'unrecorded'}: fitted on "
            f"{recal.get('fitted_on', 'unknown data')} (intercept "
            f"{recal.get('intercept', float('nan')):.2f}, slope {recal.get('slope', float('nan')):.2f}"
            "); discrimination is unchanged."
        )
    _print_feedback(actor, record.id)
    if not evaluations:
        print(
            "\nNo external evaluation recorded yet. Record one with "
            f"`medimg evaluate {record.model_dir} NEW_SITE.csv --json OUT.json`."
        )
        return 0
    print(f"\nExternal evaluations ({len(evaluations)}), newest first:")
    _print_table(evaluation_history(evaluations))
    return 0


def _print_feedback(actor: Actor, run_id: str) -> None:
    """The readers' feedback summary of a run (``medimg runs --show``)."""
    from medimg_core.reporting.feedback import feedback_summary, feedback_text
    from medimg_core.store import guarded

    summary = feedback_summary(guarded.list_feedback(actor, run_id))
    print(f"\nReaders' feedback: {feedback_text(summary)}")


def _cmd_runs_compare(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.modelling.evaluation import format_metric
    from medimg_core.reporting.comparison import (
        SELECTION_NOTE,
        difference_text,
        paired_rates,
        paired_rates_frame,
        paired_runs,
        paired_sentence,
        run_label,
    )
    from medimg_core.reporting.summaries import card_positive_text
    from medimg_core.store import guarded
    from medimg_core.store.cases import load_cases

    actor: Actor = args.actor
    records = [guarded.open_run(actor, run_id, client="cli") for run_id in (args.run_a, args.run_b)]
    stored = [load_cases(r.model_dir) for r in records]
    both = (records[0], stored[0], records[1], stored[1])
    result = paired_runs(*both, partition=args.partition, n_boot=args.n_boot)
    rates = paired_rates(*both, partition=args.partition)
    where = "held-out test" if args.partition == "test" else "cross-validated (out-of-fold)"
    positive = card_positive_text(records[0].card)
    print(
        f"ROC AUC of two runs on the same {result.n_cases:,} {where} cases "
        f"({result.n_positive:,} {positive}; positive class: {positive}):"
    )
    for name, record, value in (
        ("A", records[0], result.value_a),
        ("B", records[1], result.value_b),
    ):
        print(f"  Run {name}: {run_label(record)} ({record.id}): ROC AUC {format_metric(value)}")
    print(f"  Difference B \u2212 A: {difference_text(result)}")
    print(f"  Method: {result.method}.")
    sentence = paired_sentence(result)
    print(sentence)
    threshold_a, threshold_b = records[0].threshold, records[1].threshold
    if rates is not None and threshold_a is not None and threshold_b is not None:
        print("At each run's own threshold (McNemar's exact test, Newcombe's paired interval):")
        frame = paired_rates_frame(
            rates, positive, threshold_a=threshold_a, threshold_b=threshold_b
        )
        _print_table([{str(k): v for k, v in row.items()} for row in frame.to_dict("records")])
    if args.partition == "test":
        print(f"Note: {SELECTION_NOTE}")
    if args.json:
        payload = {
            "run_a": {"id": records[0].id, "label": run_label(records[0])},
            "run_b": {"id": records[1].id, "label": run_label(records[1])},
            "positive_class": positive,
            "comparison": result.to_dict(),
            "sentence": sentence,
            "at_own_threshold": None if rates is None else [r.to_dict() for r in rates],
        }
        out = _write_atomic(Path(args.json), _json_bytes(payload))
        print(f"Wrote {out}.")
    return 0


def _cmd_runs_context(args: argparse.Namespace, notes: list[str]) -> int:
    """``medimg runs context RUN_ID [--intended-use ...]``: state or show what a run is for."""
    from medimg_core.reporting.model_report import CONTEXT_LABELS, NOT_STATED
    from medimg_core.store import guarded
    from medimg_core.store.registry import RunContext

    actor: Actor = args.actor
    fields = {name: getattr(args, name) for name in CONTEXT_LABELS}
    context: RunContext | None
    if any(v is not None for v in fields.values()):
        context = guarded.set_run_context(actor, args.run_id, client="cli", **fields)
        print(f"Stated for run {args.run_id} (shown in its model report):")
    else:
        context = guarded.get_run_context(actor, args.run_id)
        print(f"What run {args.run_id} is for (change it with the options of this command):")
    for name, label in CONTEXT_LABELS.items():
        value = getattr(context, name, "") if context is not None else ""
        print(f"  {label}: {value or NOT_STATED}")
    return 0


def _cmd_report(args: argparse.Namespace, notes: list[str]) -> int:
    """``medimg report MODEL_DIR_OR_RUN_ID -o report.pdf|report.html``."""
    from medimg_core.reporting.model_report import report_format, run_report, write_report
    from medimg_core.store import guarded
    from medimg_core.store.registry import Registry

    actor: Actor = args.actor
    output = Path(args.output)
    report_format(output)  # a bad extension is refused before any work
    with Registry() as registry:
        target = str(args.target)
        run_id = target if not Path(target).expanduser().is_dir() else None
        project = None
        if run_id is not None:
            project = registry.get_run(actor, run_id).project
        with guarded.audited(
            actor, Action.REPORT, client="cli", object=run_id, project=project, registry=registry
        ) as handle:
            report = run_report(actor, target, registry=registry)
            handle.object = report.run_id
            written = write_report(report, output)
    size = written.stat().st_size
    print(
        f"Wrote the model report of run {report.run_id} to {written} "
        f"({len(report.sections)} sections, {size / 1024:,.0f} KB)."
    )
    unanswered = sum(1 for item in report.checklist if item.section is None)
    print(
        f"Checklist: {len(report.checklist) - unanswered} of {len(report.checklist)} "
        "TRIPOD+AI / CLAIM items answered in the report; the others say why not."
    )
    return 0


def _add_report_parsers(sub: Any, runs_sub: Any) -> None:
    q = runs_sub.add_parser(
        "context",
        help="state what a run is for (intended use, population, reference standard)",
        description="State what a run is for; the model report shows it and says 'not stated' "
        "for what is left empty. Without options, show what is stated. Only the run's owner "
        "or an admin may change it; an empty text clears a field.",
    )
    q.add_argument("run_id", metavar="RUN_ID", help="the run's id (see `medimg runs`)")
    q.add_argument("--intended-use", dest="intended_use", metavar="TEXT", default=None)
    q.add_argument("--population", dest="target_population", metavar="TEXT", default=None)
    q.add_argument("--reference-standard", dest="reference_standard", metavar="TEXT", default=None)
    q.add_argument("--setting", dest="clinical_setting", metavar="TEXT", default=None)
    q.add_argument("--users", dest="intended_users", metavar="TEXT", default=None)
    q.set_defaults(handler=_cmd_runs_context)

    p = sub.add_parser(
        "report",
        help="write a run's model report (TRIPOD+AI / CLAIM) as PDF or HTML",
        description="Write the model report of a recorded run (by id) or a model directory: "
        "identity, intended use, flow of cases, characteristics, validation, metrics with 95% "
        "intervals, calibration, explanation, typical errors, external evaluations, reader "
        "feedback, warnings and a TRIPOD+AI / CLAIM checklist. The format follows the output's "
        "extension (.pdf or .html).",
    )
    p.add_argument("target", metavar="MODEL_DIR_OR_RUN_ID")
    p.add_argument("-o", "--output", metavar="REPORT.pdf|REPORT.html", required=True)
    p.set_defaults(handler=_cmd_report)


def _whole_number(text: str, minimum: int, expectation: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expectation}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "a number of at least 1")


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def _confidence(text: str) -> float:
    from medimg_core.modelling.conformal import check_confidence

    try:
        return check_confidence(float(text))
    except (ValueError, MedimgError):
        raise argparse.ArgumentTypeError(
            f"expected a confidence strictly between 0 and 1 such as 0.9, got {text!r}"
        ) from None


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.2, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a share from 0 up to (not including) 1, got {value}"
        )
    return value


def _probability(text: str) -> float:
    value = _share(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError("expected a sensitivity above 0, got 0")
    return value


def _add_cleaning_options(parser: argparse.ArgumentParser) -> None:
    missing = parser.add_mutually_exclusive_group()
    missing.add_argument(
        "--drop-missing",
        action="store_true",
        help="remove rows with a missing feature value (complete-case analysis); by default "
        "they are kept and the model imputes, fitted on training folds only",
    )
    missing.add_argument(
        "--impute",
        action="store_true",
        help="keep rows with missing values and impute inside the model (the default)",
    )
    parser.add_argument(
        "--duplicates",
        choices=("auto", "keep", "drop"),
        default="auto",
        help="repeated records: 'auto' removes later copies with the same patient ID, and "
        "identical rows without an ID only when measurements are continuous enough that "
        "different patients would not match by chance; 'keep' lists them; "
        "'drop' removes every identical row. Rows with different IDs are never copies.",
    )


def _add_role_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", metavar="COL", help="the label column (default: proposed)")
    parser.add_argument(
        "--id", metavar="COL", help="the patient/case ID column (default: proposed)"
    )
    parser.add_argument(
        "--exclude",
        metavar="COL",
        nargs="+",
        default=[],
        help="columns to leave out of the model (identifying columns are excluded automatically)",
    )


def _add_image_options(parser: argparse.ArgumentParser, *, size: bool) -> None:
    group = parser.add_argument_group(
        "image data (a folder, .zip or .npz of images, or a study of 3D volumes with masks)"
    )
    group.add_argument(
        "--labels",
        metavar="FILE",
        help="labels table with columns file, label (optional patient_id, clinical columns); "
        "default labels.csv in the folder, else one sub-folder per class. For a 3D study: its "
        "manifest (case, image, mask, label; default manifest.csv in the study)",
    )
    group.add_argument(
        "--masks",
        metavar="DIR",
        help="region-of-interest masks with the images' file names (default masks/ if present); "
        "for a 3D study, each case's segmentation at the case's path",
    )
    if size:
        group.add_argument(
            "--size",
            metavar="N",
            type=_positive_int,
            help="resize every image to N×N before extraction (default the most common size)",
        )
        group.add_argument(
            "--params",
            metavar="RADIOMICS.yaml",
            help="radiomics settings for 3D volumes in PyRadiomics' YAML layout (setting, "
            "imageType, featureClass): resampling, re-segmentation, bin width, families; "
            "saved with the model and reused at prediction. Also reads folders of DICOM "
            "series as 3D cases",
        )
    group.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        default=None,
        help="feature-extraction processes (default all cores)",
    )


def _cmd_audit_verify(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.audit import AuditTrail

    require(args.actor, Action.READ_AUDIT)
    with AuditTrail() as trail:
        result = trail.verify()
    print(result.message)
    if not result.ok:
        print(
            f"Entries from number {result.first_broken_seq} on cannot be trusted. Keep a copy of "
            "the database as it is for the investigation and tell your information-governance "
            "lead."
        )
        return 1
    if result.n_entries:
        print(
            f"Newest entry's hash: {result.last_hash}. Note it somewhere else (a ticket, an "
            "e-mail): a later check can then also show whether the newest entries were removed."
        )
    return 0


def _cmd_audit_list(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.audit import AuditFilter, AuditTrail, audit_csv

    require(args.actor, Action.READ_AUDIT)
    filters = AuditFilter(user=args.user, action=args.action, since=args.since, until=args.until)
    with AuditTrail() as trail:
        frame = trail.entries(filters)
    content = audit_csv(frame)
    if args.output is None:
        sys.stdout.write(content.decode("utf-8"))
        return 0
    target = _write_atomic(Path(args.output), content)
    entries = "entry" if len(frame) == 1 else "entries"
    print(f"Wrote {len(frame)} audit {entries} to {target} (oldest first, times in UTC).")
    return 0


def _audit_time(text: str, *, end_of_day: bool) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date such as 2026-03-01 or a time such as 2026-03-01T14:30 (UTC), "
            f"got {text!r}"
        ) from None
    if end_of_day and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        # "--until 2026-03-01" means up to the end of that day, as a reader expects.
        value += timedelta(days=1) - timedelta(microseconds=1)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _since_time(text: str) -> datetime:
    return _audit_time(text, end_of_day=False)


def _until_time(text: str) -> datetime:
    return _audit_time(text, end_of_day=True)


def _add_audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="check or export the audit trail (who did what, and when)")
    actions = p.add_subparsers(dest="audit_command", required=True)
    q = actions.add_parser(
        "verify", help="check that no entry was changed, removed or moved; exit 1 if one was"
    )
    q.set_defaults(handler=_cmd_audit_verify)
    q = actions.add_parser(
        "list", help="export entries as CSV, oldest first (to standard output, or -o FILE)"
    )
    q.add_argument("--user", metavar="NAME", help="only entries by this user")
    q.add_argument(
        "--action",
        choices=ACTIONS,
        metavar="ACTION",
        help=f"only entries of this action, one of: {', '.join(ACTIONS)}",
    )
    q.add_argument(
        "--since",
        metavar="WHEN",
        type=_since_time,
        help="only entries at or after this date or time (UTC unless a zone is given)",
    )
    q.add_argument(
        "--until",
        metavar="WHEN",
        type=_until_time,
        help="only entries at or before this time; a date alone includes that whole day",
    )
    q.add_argument("-o", "--output", metavar="AUDIT.csv", help="write the CSV to this file")
    q.set_defaults(handler=_cmd_audit_list)


def _cmd_keys_rotate(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.keys import rotate_workspace_key

    actor: Actor = args.actor
    try:
        require(actor, Action.CHANGE_SETTINGS)
    except PermissionDenied:
        _record_cli_action(actor, "key rotation", "refused", notes)
        raise
    try:
        summary = rotate_workspace_key().summary()
    except MedimgError:
        _record_cli_action(actor, "key rotation", "failed", notes)
        raise
    print(summary)
    _record_cli_action(actor, "key rotation", "ok", notes)
    return 0


def _record_cli_action(actor: Actor, action: str, outcome: str, notes: list[str]) -> None:
    """Add an audit entry for a command run at this machine by ``actor``."""
    from medimg_core.store.audit import AuditTrail

    try:
        with AuditTrail() as trail:
            trail.append(
                user=actor.username,
                role=actor.role.value,
                project=actor.project,
                action=action,
                outcome=outcome,
                client="cli",
            )
    except MedimgError as exc:
        # The work is done (or already failed); say that it went unrecorded rather than hide it.
        notes.append(f"this {action} could not be recorded in the audit trail: {exc}")


def _add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="manage the key that encrypts stored data sets and models")
    actions = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    q = actions.add_parser(
        "rotate",
        help="make a new key and re-encrypt every stored data set, cases file and model file "
        "with it; run it again to finish an interrupted rotation",
    )
    q.set_defaults(handler=_cmd_keys_rotate)


class _NoPasswordArgument(argparse.Action):
    """``--password VALUE`` is refused without echoing VALUE: on a command line a password
    stays in the shell history and is visible to other users in the process list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            "a password is never given on the command line (it would stay in the shell "
            "history); type it when asked, or pipe it in with --password-stdin"
        )


def _add_password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )
    parser.add_argument("--password", nargs="?", action=_NoPasswordArgument, help=argparse.SUPPRESS)


def _read_password(args: argparse.Namespace) -> str:
    """The new password: one line of standard input with ``--password-stdin`` (for scripts),
    else typed twice without echo. Never taken from the command line, where it would be seen in
    the shell history and the process list."""
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Type it again: ") != first:
        raise ConfigError("the two passwords typed differ; run the command again.")
    return first


def _print_table(rows: Sequence[Mapping[str, Any]]) -> None:
    """Print ``rows`` (all with the same keys, in order) as left-aligned columns under a header."""
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    print("  ".join(h.ljust(widths[h]) for h in headers).rstrip())
    for row in rows:
        print("  ".join(str(row[h]).ljust(widths[h]) for h in headers).rstrip())


def _membership_text(name: str, projects: Sequence[str]) -> str:
    if projects:
        return f"member of {', '.join(projects)}"
    return (
        f"in no project yet, so they see no data; add them with "
        f"`medimg projects add-member PROJECT {name}`"
    )


def _cmd_users_add(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    password = _read_password(args)
    with Accounts() as accounts:
        user = accounts.add_user(
            args.name, password, args.role, projects=args.project, by=args.actor
        )
    membership = _membership_text(user.username, user.projects)
    print(f"Added {user.username} ({user.role.value}), {membership}.")
    return 0


def _cmd_users_list(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    require(args.actor, Action.MANAGE_USERS)
    with Accounts() as accounts:
        users = accounts.list_users()
        url = accounts.url
    if not users:
        print(f"No users yet in {url}. Add one with `medimg users add NAME --role admin`.")
        return 0
    now = datetime.now(UTC)
    _print_table(
        [
            {
                "name": u.username,
                "role": u.role.value,
                "projects": ", ".join(u.projects) or "(none)",
                "disabled": "yes" if u.disabled else "no",
                "locked": (
                    f"until {u.locked_until:%Y-%m-%d %H:%M} UTC"
                    if u.locked_until is not None and u.locked(now)
                    else "no"
                ),
                "last sign-in": (
                    "never" if u.last_sign_in is None else f"{u.last_sign_in:%Y-%m-%d %H:%M} UTC"
                ),
            }
            for u in users
        ]
    )
    return 0


def _cmd_users_disable(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    with Accounts() as accounts:
        user = accounts.disable(args.name, by=args.actor)
    print(f"Disabled {user.username}: they can no longer sign in; their runs stay.")
    return 0


def _cmd_users_enable(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    with Accounts() as accounts:
        user = accounts.enable(args.name, by=args.actor)
    print(f"Enabled {user.username}: they can sign in again (any lock-out is lifted).")
    return 0


def _cmd_users_set_role(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    with Accounts() as accounts:
        user = accounts.set_role(args.name, args.role, by=args.actor)
    print(f"{user.username} is now {user.role.value}; it applies from their next sign-in.")
    return 0


def _cmd_users_set_password(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    password = _read_password(args)
    with Accounts() as accounts:
        accounts.set_password(args.name, password, by=args.actor)
        name = accounts.get_user(args.name).username
    print(f"Changed the password of {name} (any lock-out is lifted).")
    return 0


def _cmd_projects_add(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    with Accounts() as accounts:
        project = accounts.add_project(args.name, by=args.actor)
    print(
        f"Added project {project.name}. Add members with "
        f"`medimg projects add-member {project.name!r} USER`."
    )
    return 0


def _cmd_projects_list(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    require(args.actor, Action.MANAGE_PROJECTS)
    with Accounts() as accounts:
        projects = accounts.list_projects()
    _print_table(
        [{"project": p.name, "members": ", ".join(p.members) or "(none)"} for p in projects]
    )
    return 0


def _cmd_projects_add_member(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    with Accounts() as accounts:
        project = accounts.add_member(args.project, args.user, by=args.actor)
    members = ", ".join(project.members)
    print(f"Project {project.name} now has {len(project.members)} member(s): {members}.")
    return 0


def _cmd_projects_remove_member(args: argparse.Namespace, notes: list[str]) -> int:
    from medimg_core.store.accounts import Accounts

    with Accounts() as accounts:
        project = accounts.remove_member(args.project, args.user, by=args.actor)
    left = ", ".join(project.members) or "none"
    print(f"Removed {args.user} from {project.name} (their runs stay in it). Members: {left}.")
    return 0


def _add_account_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    roles = [r.value for r in Role]
    p = sub.add_parser("users", help="local accounts: add, list, disable, enable, change role")
    users = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    q = users.add_parser("add", help="add a user (the password is asked for, never an argument)")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--role", choices=roles, required=True)
    q.add_argument(
        "--project",
        metavar="PROJECT",
        action="append",
        default=[],
        help="an existing project the user joins; repeatable",
    )
    _add_password_options(q)
    q.set_defaults(handler=_cmd_users_add, audit_as="user change")
    q = users.add_parser("list", help="list users: role, projects, disabled, locked")
    q.set_defaults(handler=_cmd_users_list)
    q = users.add_parser("disable", help="stop a user from signing in")
    q.add_argument("name", metavar="NAME")
    q.set_defaults(handler=_cmd_users_disable, audit_as="user change")
    q = users.add_parser("enable", help="let a disabled or locked-out user sign in again")
    q.add_argument("name", metavar="NAME")
    q.set_defaults(handler=_cmd_users_enable, audit_as="user change")
    q = users.add_parser("set-role", help="change a user's role")
    q.add_argument("name", metavar="NAME")
    q.add_argument("role", metavar="ROLE", choices=roles, help=f"one of {', '.join(roles)}")
    q.set_defaults(handler=_cmd_users_set_role, audit_as="role change")
    q = users.add_parser("set-password", help="change a user's password")
    q.add_argument("name", metavar="NAME")
    _add_password_options(q)
    q.set_defaults(handler=_cmd_users_set_password, audit_as="user change")

    p = sub.add_parser("projects", help="projects and their members")
    projects = p.add_subparsers(dest="projects_command", required=True, metavar="ACTION")
    q = projects.add_parser("add", help="add a project")
    q.add_argument("name", metavar="NAME")
    q.set_defaults(handler=_cmd_projects_add, audit_as="project change")
    q = projects.add_parser("list", help="list projects and their members")
    q.set_defaults(handler=_cmd_projects_list)
    for action, handler, verb in (
        ("add-member", _cmd_projects_add_member, "add a user to a project"),
        ("remove-member", _cmd_projects_remove_member, "take a user out of a project"),
    ):
        q = projects.add_parser(action, help=verb)
        q.add_argument("project", metavar="PROJECT")
        q.add_argument("user", metavar="USER")
        q.set_defaults(handler=handler, audit_as="project change")


def _audited_account_change(
    args: argparse.Namespace,
    notes: list[str],
    handler: Callable[[argparse.Namespace, list[str]], int],
    action: str,
) -> int:
    """Run a users/projects command and record it (refused, failed or done) in the audit trail."""
    try:
        status = handler(args, notes)
    except PermissionDenied:
        _record_cli_action(args.actor, action, "refused", notes)
        raise
    except MedimgError:
        _record_cli_action(args.actor, action, "failed", notes)
        raise
    _record_cli_action(args.actor, action, "ok", notes)
    return status


def cli_actor(name: str | None, project: str | None) -> Actor:
    """The user the command line acts as.

    Parameters
    ----------
    name : ``--user``; defaults to ``MEDIMG_USER``.
    project : ``--project``; defaults to the user's only project, else "default".

    Returns
    -------
    Actor
        With no local accounts configured, the single local user (an admin of "default", as
        the dashboard's single-user mode) under the operating-system user's name, so the audit
        trail says who ran the command. Otherwise the named, enabled account with its role and
        projects from the accounts store.

    Raises
    ------
    PermissionDenied
        When accounts exist and no user is named, the account is disabled or locked, or the
        user is not a member of the project asked for.
    ConfigError
        When the named user does not exist, or the project cannot be chosen.
    """
    from medimg_core.store.accounts import Accounts

    name = name or os.environ.get("MEDIMG_USER") or None
    with Accounts() as accounts:
        users = accounts.list_users()
    if not users:
        try:
            local = getpass.getuser()
        except (OSError, KeyError):
            local = SINGLE_USER.username
        single = dataclasses.replace(SINGLE_USER, username=local)
        return single if project is None else single.in_project(project)
    if name is None:
        raise PermissionDenied(
            "local accounts are configured, so the command line must act as one of them: add "
            "--user NAME (before the command) or set MEDIMG_USER."
        )
    record = next((u for u in users if u.username.casefold() == name.strip().casefold()), None)
    if record is None:
        raise ConfigError(
            f"there is no local account {name!r}; list them with `medimg users list` (as an "
            "admin) or ask an admin to add you."
        )
    if record.disabled or record.locked():
        state = "disabled" if record.disabled else "locked after failed sign-ins"
        raise PermissionDenied(
            f"the account {record.username!r} is {state}; ask an admin to enable it "
            "(`medimg users enable`)."
        )
    projects = frozenset(record.projects)
    if project is None:
        if len(projects) == 1:
            (project,) = projects
        elif DEFAULT_PROJECT in projects or not projects:
            project = DEFAULT_PROJECT if projects else None
        else:
            listed = ", ".join(sorted(projects, key=str.casefold))
            raise ConfigError(
                f"{record.username} is a member of several projects ({listed}); choose one "
                "with --project PROJECT (before the command)."
            )
    return Actor(record.username, record.role, projects, project)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("medimg")
    except metadata.PackageNotFoundError:
        return "(not installed)"


class _VersionAction(argparse.Action):
    """``--version``, looking the version up only when asked (reading the installed package's
    metadata costs more than building the whole parser)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show program's version number and exit")
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"medimg {_version()}")
        parser.exit()


SCHEDULER_HELP = (
    "where heavy steps run: tcp://HOST:PORT (a Dask cluster), local:N (N worker processes on "
    "this machine); default $MEDIMG_SCHEDULER, else this process"
)


class _SubcommandsWithParents:
    """``add_parser`` that gives every sub-command the same shared options."""

    def __init__(self, action: Any, parents: list[argparse.ArgumentParser]) -> None:
        self._action = action
        self._parents = parents

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("parents", [])
        kwargs["parents"] = [*kwargs["parents"], *self._parents]
        parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``medimg`` argument parser (one sub-command per step)."""
    parser = argparse.ArgumentParser(
        prog="medimg",
        description="Honest, explained diagnostic models from medical images and imaging "
        "feature tables.",
        epilog="DATA is a CSV/TSV/Excel/Parquet file, sample:wdbc, or images: a folder (one "
        "sub-folder per class, or labels.csv), a .zip of it, a MedMNIST .npz, or (predict) one "
        "image.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--user",
        dest="acting_user",
        metavar="NAME",
        default=None,
        help="act as this local account (default: $MEDIMG_USER); needed once accounts exist",
    )
    parser.add_argument(
        "--project",
        dest="acting_project",
        metavar="PROJECT",
        default=None,
        help="the project to work in (default: the user's only project, else 'default')",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help=SCHEDULER_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --scheduler is accepted after the command too ("medimg train --scheduler local:2 ...").
    scheduler_option = argparse.ArgumentParser(add_help=False)
    scheduler_option.add_argument(
        "--scheduler", metavar="ADDRESS", default=argparse.SUPPRESS, help=SCHEDULER_HELP
    )
    sub = cast(Any, _SubcommandsWithParents(sub, [scheduler_option]))

    p = sub.add_parser("clean", help="clean a table and report every removed row")
    p.add_argument("data", metavar="DATA")
    _add_role_options(p)
    _add_cleaning_options(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="CLEAN.parquet",
        required=True,
        help="the cleaned table; a folder of Parquet parts when cleaned in partitions",
    )
    p.add_argument("--report", metavar="REPORT.json", required=True)
    p.add_argument(
        "--partitioned",
        action="store_true",
        help="read and clean the table partition by partition (automatic for a folder or glob "
        "of CSV/Parquet files, a file over 200 MB, or with --scheduler); the output is then a "
        "folder of Parquet parts",
    )
    p.set_defaults(handler=_cmd_clean)

    p = sub.add_parser("train", help="clean, train and validate a model; save and record it")
    p.add_argument("data", metavar="DATA")
    _add_role_options(p)
    p.add_argument(
        "--positive",
        metavar="VALUE",
        help="the positive (disease) class: a label value or a class name; required for "
        "numeric codes (0/1, 2/4) unless the label column's name says which is the disease",
    )
    p.add_argument(
        "--class-names",
        metavar="CODE=NAME,...",
        type=_class_names_option,
        default=None,
        help="names for the label's codes, e.g. 0=malignant,1=benign; shown in every table, "
        "figure, prediction and the model card",
    )
    p.add_argument(
        "--keep-feature",
        metavar="COL",
        action="append",
        default=[],
        help="keep a column that looks like a patient or record number as a feature (it is "
        "refused otherwise); repeatable",
    )
    p.add_argument(
        "--reader",
        metavar="COL",
        nargs="+",
        default=[],
        help="feature columns that are a reader's assessment (e.g. BI-RADS); they stay "
        "features, and performance is also reported without them",
    )
    p.add_argument(
        "--site",
        metavar="COL",
        help="the site (hospital, scanner) column; never a feature, metrics are given per site "
        "(default: proposed from the name)",
    )
    p.add_argument(
        "--subgroup",
        metavar="COL",
        nargs="+",
        default=None,
        help="columns whose groups get their own metrics with 95%% CIs (default: sex and age "
        "columns); they stay features unless also passed to --exclude",
    )
    p.add_argument(
        "--validation",
        choices=("standard", "leave-one-site-out"),
        default="standard",
        help="leave-one-site-out: also hold out each site in turn and score it once, as extra "
        "evidence of transfer to a new site (the saved model is still trained the standard way)",
    )
    p.add_argument("--model", choices=MODEL_CHOICES, default="auto")
    p.add_argument(
        "--scaling", choices=("standard", "minmax", "robust", "none"), default="standard"
    )
    p.add_argument("--pca", metavar="N", type=_positive_int, default=None)
    p.add_argument("--class-weight", choices=("balanced",), default=None)
    p.add_argument("--cv", metavar="K", type=_positive_int, default=5)
    p.add_argument("--test-size", metavar="F", type=_share, default=0.2)
    p.add_argument("--threshold", choices=("0.5", "youden", "sensitivity"), default="0.5")
    p.add_argument("--target-sensitivity", metavar="S", type=_probability, default=0.9)
    p.add_argument("--n-boot", metavar="N", type=_positive_int, default=1000)
    p.add_argument("--seed", metavar="N", type=int, default=42)
    p.add_argument("--no-clean", action="store_true", help="skip the default cleaning plan")
    _add_cleaning_options(p)
    p.add_argument("-o", "--output", metavar="MODEL_DIR", required=True)
    _add_image_options(p, size=True)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="validate a saved model on new labelled data (no refit)")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--label", metavar="COL", help="the label column if named differently")
    p.add_argument("--n-boot", metavar="N", type=_positive_int, default=1000)
    p.add_argument("--json", metavar="METRICS.json", required=True)
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="fit logistic recalibration on these data and save the model with it as a new run "
        "(two-class models; its calibration on these same data is then optimistic)",
    )
    _add_image_options(p, size=False)
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="score new cases with a saved model",
        description="Score new cases. OUT is one CSV file; or a folder of parts "
        "(part-00000.parquet ...) when OUT ends with / or is a folder, DATA is a folder or "
        "glob of CSV/Parquet files, or --partitioned is given: each partition of DATA is then "
        "one task (on the cluster with --scheduler) and memory stays bounded by a few "
        "partitions.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA")
    p.add_argument("-o", "--output", metavar="OUT", required=True)
    p.add_argument(
        "--partitioned",
        action="store_true",
        help="write a folder of parts (one per partition of DATA) even for one input file",
    )
    p.add_argument(
        "--format",
        dest="output_format",
        choices=_PREDICTION_FORMATS,
        default=None,
        help="format of the parts (default parquet; csv is formula-safe for spreadsheets)",
    )
    p.add_argument(
        "--rows-per-part",
        metavar="N",
        type=_positive_int,
        default=None,
        help=f"Parquet row groups read together per task (default {_PARTITION_ROWS:,}); a CSV "
        "file is one part",
    )
    p.add_argument(
        "--explain", metavar="K", type=_non_negative_int, default=0, help="add K top SHAP reasons"
    )
    p.add_argument(
        "--abstain-ood",
        action="store_true",
        help="give no decision (refer to a reader) for cases unlike the training data",
    )
    p.add_argument(
        "--abstain-band",
        metavar="LOW,HIGH",
        type=_band,
        default=None,
        help="give no decision when P(positive) lies in this band around the threshold, "
        "e.g. 0.4,0.6",
    )
    p.add_argument(
        "--confidence",
        metavar="P",
        type=_confidence,
        default=0.9,
        help="confidence of the prediction-set column, e.g. 0.9 (default): each case's set of "
        "classes holds the true class for about this share of cases (conformal prediction "
        "calibrated on the run's development cases)",
    )
    _add_image_options(p, size=False)
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser(
        "features",
        help="extract named image features, or IBSI radiomic features of 3D volumes, into a "
        "Parquet table (with settings)",
    )
    p.add_argument(
        "images",
        metavar="IMAGES",
        help="a folder, .zip or .npz of images, or a study of 3D volumes (NIfTI, NRRD, DICOM "
        "series) with their segmentations",
    )
    p.add_argument("-o", "--output", metavar="FEATURES.parquet", required=True)
    _add_image_options(p, size=True)
    p.set_defaults(handler=_cmd_features)

    p = sub.add_parser("runs", help="list recorded runs, newest first (or delete one)")
    p.add_argument(
        "--delete",
        metavar="RUN_ID",
        help="delete this run: its record, its model folder when medimg made it inside the "
        "workspace (a folder elsewhere is left untouched) and its stored data when no other run "
        "uses them",
    )
    p.add_argument(
        "--show",
        metavar="RUN_ID",
        help="show this run and its recorded external evaluations (date, user, file, cases, "
        "ROC AUC, calibration, recalibrated run)",
    )
    p.set_defaults(handler=_cmd_runs)
    runs_sub = p.add_subparsers(dest="runs_command", metavar="{compare,context}")
    c = runs_sub.add_parser(
        "compare",
        help="compare two runs' ROC AUC on the same cases (paired difference, 95%% CI, p-value)",
        description="Compare two runs trained on the same data with the same split: the "
        "difference in ROC AUC (run B minus run A) with a paired 95%% interval and p-value "
        "(DeLong's test, or a paired bootstrap over patients when patients have several cases).",
    )
    c.add_argument("run_a", metavar="RUN_A", help="the first run's id (see `medimg runs`)")
    c.add_argument("run_b", metavar="RUN_B", help="the second run's id")
    c.add_argument(
        "--partition",
        choices=("test", "cv"),
        default="test",
        help="compare on the held-out test cases (default) or the out-of-fold development cases",
    )
    c.add_argument(
        "--n-boot",
        type=_positive_int,
        default=1000,
        help="bootstrap resamples when patients have several cases (default 1000)",
    )
    c.add_argument("--json", metavar="FILE", help="also write the comparison as JSON to FILE")
    c.set_defaults(handler=_cmd_runs_compare)
    _add_report_parsers(sub, runs_sub)
    _add_audit_parser(sub)
    _add_keys_parser(sub)
    _add_account_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medimg`` command line.

    Parameters
    ----------
    argv : arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 for a user-facing error or a usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    # Everything a command needs is imported by its handler, after parsing: `medimg --help` and
    # usage errors load no data, model, storage or process-pool code.
    from medimg_core import compute

    handler: Callable[[argparse.Namespace, list[str]], int] = args.handler
    notes: list[str] = []
    try:
        args.actor = cli_actor(args.acting_user, args.acting_project)
        audit_as: str | None = getattr(args, "audit_as", None)
        with compute.running_on(args.scheduler):
            if audit_as is None:
                status = handler(args, notes)
            else:
                status = _audited_account_change(args, notes, handler, audit_as)
    except MedimgError as exc:
        message = " ".join(str(exc).split())
        print(f"medimg: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medimg: interrupted", file=sys.stderr)
        return 130
    for note in notes:
        print(f"medimg: {note}", file=sys.stderr)
    return status
