"""Tables too large for one process: read, profiled and cleaned partition by partition.

A :class:`PartitionedTable` is one CSV file, a folder or glob of CSV files, or a Parquet file or
folder of parts, opened lazily as a ``dask.dataframe`` whose partitions are the files (Parquet:
groups of row groups). It reads every value exactly as :func:`~medimg_core.tables.loading.
load_table` reads the same rows in one file (for several CSV files: the first file followed by
the rows of the others, their header lines left out; for several Parquet parts: the parts in
name order):

* the delimiter, decimal comma, column names and the columns pinned to text are taken from the
  same sample the loader would see (the first 200 records);
* whether a column becomes numbers (and int64 or float64), which values could not be read, and
  the empty rows and nameless empty columns that are dropped are decided on the WHOLE table, from
  exact per-partition counts combined once when the table is opened (nothing is decided on one
  partition alone). Each row gets its position in that table as its index, so row numbers in
  reports are those of the same table loaded in memory.

:func:`clean_partitioned` applies the rules of :func:`~medimg_core.tables.cleaning.clean`, in
the same order and with the same exact row accounting (``kept + removed == input``, every
removed row listed with its reason). Rules on one row at a time run on each partition. Rules that
compare rows (repeated records, conflicting labels, twins across a predefined split) only ever
compare rows with equal feature values: a first pass (the same read as the whole-input facts)
finds, bucket by bucket on the workers, the feature hashes held by more than one row; only those
rows are then moved, hash-partitioned so every candidate copy of a record is in the same bucket,
and the in-memory rule runs there with the rows in input order. Everything the rules learn from
the whole table is an exact global aggregate:

* empty and constant columns, the split, continuous columns, score scales: per-partition minima,
  maxima, whole-number tests and distinct values (capped at what the rule needs), combined;
* the chance that two patients match (``duplicates="auto"`` without an ID): exact global value
  counts per feature (a Dask group-by), squared and summed as whole numbers;
* the outlier centre and scale: the exact median and median absolute deviation, found by a radix
  selection over the bit patterns of the values (histograms of 65,536 bins combined on the
  cluster, then only the values of one narrow bin gathered), never by an approximate quantile;
  Dask's own ``quantile`` is approximate and is not used. When the MAD is 0 the mean absolute
  deviation is summed with ``math.fsum`` per partition (identical on any cluster; it can differ
  from the in-memory mean in its last bit).

Whether work runs on a cluster is asked of :func:`medimg_core.compute.current`: with a Dask
client every step runs there (workers must see the input and output paths); otherwise Dask's
threaded scheduler runs it in this process. Partitions depend on the files only, so results are
identical whatever the number of workers. The client process only ever holds small results
(per-partition counts, histograms, the removed rows and listings), never the table.

Limits: a single CSV file is one partition (split a huge CSV into several files or convert it to
Parquet); CSV files must be UTF-8 or Latin-1 text.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from medimg_core import compute
from medimg_core.errors import ConfigError, DataError, LimitError
from medimg_core.tables import cleaning as _c
from medimg_core.tables import loading as _l
from medimg_core.tables.cleaning import REMOVAL_RULES, CleaningPlan, CleaningReport
from medimg_core.tables.roles import Roles

__all__ = [
    "LARGE_TABLE_BYTES",
    "PartitionedCleaning",
    "PartitionedProfile",
    "PartitionedTable",
    "clean_partitioned",
    "is_partitioned_source",
    "open_partitioned",
    "partition_reason",
    "profile_partitioned",
    "sample_rows",
]

PARQUET_ROWS_PER_PARTITION = 1_000_000
"""Consecutive row groups of a Parquet file are read together up to about this many rows."""

_HIST_BITS = 16
_GATHER_MAX = 200_000
_LEVELS_CAP = _c.LOW_CARDINALITY_LEVELS + 1
_SPLIT_CAP = 16

Format = Literal["csv", "parquet"]


@dataclass(frozen=True)
class _Piece:
    path: str
    row_groups: tuple[int, ...] | None = None
    file_index: int = 0


@dataclass(frozen=True)
class _Spec:
    """How every partition is read and converted (decided once, on the whole table)."""

    format: Format
    names: tuple[str, ...]
    delimiter: str | None = None
    encodings: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()
    decimal_comma: bool = False
    decisions: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()

    def decision(self, column: str) -> str:
        return dict(self.decisions).get(column, "keep")


@dataclass(frozen=True)
class PartitionedTable:
    """A large table opened lazily; see the module docstring.

    Attributes
    ----------
    name : display name (the file, folder or glob given).
    paths : the files read, in order.
    format : "csv" or "parquet".
    columns, dtypes : the columns and their dtypes, as the in-memory loader would give them.
    partition_rows : rows per partition (after empty rows are dropped); ``n_rows`` is their sum.
    notes, coercion_failures : as :class:`~medimg_core.tables.loading.LoadedTable`.
    content_hash : sha256 over the partitions' content hashes, in order.
    """

    name: str
    paths: tuple[str, ...]
    format: Format
    columns: tuple[str, ...]
    dtypes: dict[str, str]
    partition_rows: tuple[int, ...]
    notes: tuple[str, ...]
    coercion_failures: dict[str, tuple[int, tuple[str, ...]]]
    content_hash: str
    _spec: _Spec = field(repr=False, compare=False)
    _pieces: tuple[_Piece, ...] = field(repr=False, compare=False)
    _meta: pd.DataFrame = field(repr=False, compare=False)

    @property
    def n_partitions(self) -> int:
        return len(self._pieces)

    @property
    def n_rows(self) -> int:
        return int(sum(self.partition_rows))

    @property
    def offsets(self) -> tuple[int, ...]:
        """The row number of each partition's first row."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.partition_rows)[:-1]]))

    @property
    def meta(self) -> pd.DataFrame:
        """An empty frame with the table's columns and dtypes."""
        return self._meta.copy()

    @property
    def frame(self) -> Any:
        """The table as a lazy ``dask.dataframe.DataFrame``; the index is the row number."""
        import dask
        import dask.dataframe as dd

        # Text stays pandas' own "str" dtype, as the in-memory loader gives it.
        with dask.config.set({"dataframe.convert-string": False}):
            return dd.from_map(
                _load_piece,
                list(self._pieces),
                self.offsets,
                spec=self._spec,
                meta=self._meta,
                enforce_metadata=False,
                label="medimg-read",
            )


@dataclass(frozen=True)
class PartitionedProfile:
    """Per-column summary of a partitioned table, computed where the engine runs.

    ``columns``: one row per column with ``column``, ``dtype``, ``missing``, ``missing_share``,
    ``min``, ``max`` and ``mean`` (numbers only). ``class_counts``: rows per label value
    (``label``, ``rows``), empty without a label.
    """

    n_rows: int
    columns: pd.DataFrame
    class_counts: pd.DataFrame


@dataclass(frozen=True)
class PartitionedCleaning:
    """The outcome of :func:`clean_partitioned`: a :class:`CleaningReport` without the kept rows
    in memory. The kept rows are the Parquet parts in ``output_dir`` (``part-00000.parquet``
    ..., read in name order they are in input order, indexed by row number); everything else is as in
    :class:`~medimg_core.tables.cleaning.CleaningReport` (``removed`` indexed by row number).
    """

    output_dir: Path
    parts: tuple[str, ...]
    n_input: int
    n_kept: int
    removed: pd.DataFrame
    counts: dict[str, int]
    conflicts: pd.DataFrame
    flags: pd.DataFrame
    dropped_columns: dict[str, str]
    plan: CleaningPlan
    notes: tuple[str, ...]
    reason_column: str
    duplicates: pd.DataFrame
    contradictions: pd.DataFrame
    across_split: pd.DataFrame
    missing_by_column: dict[str, int]
    class_counts_before: dict[str, int]
    class_counts_after: dict[str, int]
    removed_by_class: dict[str, dict[str, int]]
    where: str = "this process"

    @property
    def n_removed(self) -> int:
        return len(self.removed)

    def as_report(self, data: pd.DataFrame | None = None) -> CleaningReport:
        """The same outcome as a :class:`CleaningReport` (``data`` defaults to no rows)."""
        return CleaningReport(
            data=data if data is not None else pd.DataFrame(),
            removed=self.removed,
            counts=self.counts,
            conflicts=self.conflicts,
            flags=self.flags,
            dropped_columns=self.dropped_columns,
            n_input=self.n_input,
            plan=self.plan,
            notes=self.notes,
            reason_column=self.reason_column,
            duplicates=self.duplicates,
            contradictions=self.contradictions,
            across_split=self.across_split,
            missing_by_column=self.missing_by_column,
            class_counts_before=self.class_counts_before,
            class_counts_after=self.class_counts_after,
            removed_by_class=self.removed_by_class,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``--report`` JSON, with the same fields as :meth:`CleaningReport.to_dict`."""
        out = self.as_report().to_dict()
        out["rows_kept"] = self.n_kept
        out["output"] = {"folder": str(self.output_dir), "parts": len(self.parts)}
        out["computed_on"] = self.where
        return out


LARGE_TABLE_BYTES = _l.Limits.max_bytes  # the class default; Limits() would read settings
"""Files above this size (what the in-memory loader accepts) are read in partitions."""


def is_partitioned_source(spec: str) -> bool:
    """True for a folder or a glob pattern: sources only :func:`open_partitioned` reads."""
    if spec.startswith("sample:"):
        return False
    return Path(spec).expanduser().is_dir() or any(ch in spec for ch in "*?[")


def partition_reason(spec: str, *, requested: bool = False) -> str | None:
    """Why ``spec`` should be read in partitions (a phrase for the user), or None.

    A folder or glob of files, a file over :data:`LARGE_TABLE_BYTES`, work running on a Dask
    cluster (:func:`medimg_core.compute.current`), or the user's explicit request.
    """
    if spec.startswith("sample:"):
        return None
    if requested:
        return "--partitioned was given"
    if is_partitioned_source(spec):
        return "it is a folder or a set of files"
    path = Path(spec).expanduser()
    if path.is_file() and path.stat().st_size > LARGE_TABLE_BYTES:
        return f"it is over {_l._mb(LARGE_TABLE_BYTES)}"
    if compute.current().distributed:
        return f"the work runs on {compute.current().scheduler.describe()}"
    return None


def open_partitioned(
    path: str | os.PathLike[str],
    *,
    limits: _l.Limits | None = None,
    delimiter: str | None = None,
    rows_per_partition: int = PARQUET_ROWS_PER_PARTITION,
) -> PartitionedTable:
    """Open a CSV file, a folder or glob of CSV files, or Parquet file(s), lazily.

    Parameters
    ----------
    path : a file, a folder (every ``.csv``/``.tsv``/``.txt`` or ``.parquet`` file in it, in
        name order) or a glob pattern.
    limits : optional caps: ``max_columns`` is checked on the header, ``max_rows`` on the total;
        ``max_bytes`` is not applied (large tables are the point). None: no caps.
    delimiter : force a CSV delimiter instead of detecting it.
    rows_per_partition : Parquet row groups are grouped up to about this many rows.

    Returns
    -------
    PartitionedTable
        One pass over the data has been made (on the engine in force) to decide the column
        types and count the rows (a second, counting pass only when some rows hold nothing
        but values that may turn missing once converted); the frame itself stays lazy.

    Raises
    ------
    DataError
        No files, mixed formats, files whose headers or schemas differ, unreadable files.
    """
    display = str(path)
    paths = _expand(display)
    suffixes = {Path(p).suffix.lower() for p in paths}
    if suffixes <= _l._PARQUET_EXTENSIONS:
        pieces, spec, notes = _parquet_spec(paths, rows_per_partition, display)
    elif suffixes <= _l._TEXT_EXTENSIONS:
        pieces, spec, notes = _csv_spec(paths, delimiter, display)
    else:
        raise DataError(
            f"'{display}' mixes file types ({', '.join(sorted(suffixes))}). Put only CSV files "
            "or only Parquet parts in the folder, or give a glob such as 'data/*.csv'."
        )
    if limits is not None and len(spec.names) > limits.max_columns:
        raise LimitError(
            f"'{display}' has {len(spec.names):,} columns, over the {limits.max_columns:,} "
            "limit. Keep only the columns you need or raise Limits(max_columns=...)."
        )
    scans = _run([_delayed(_scan_piece)(piece, spec) for piece in pieces])
    spec, counts, more_notes, failures = _decide(spec, scans, display)
    if any(s["maybe_empty"] for s in scans):
        # Some rows hold only values that may become missing once converted: count them exactly.
        counts = _run([_delayed(_count_piece)(piece, spec) for piece in pieces])
    n_rows = int(sum(counts))
    if n_rows == 0:
        raise DataError(
            f"'{display}' has a header but no data rows, or every value is missing. Choose "
            "files with at least one row of data below the header."
        )
    if limits is not None and n_rows > limits.max_rows:
        raise LimitError(
            f"'{display}' has {n_rows:,} rows, over the {limits.max_rows:,} limit. Load a "
            "subset of the rows or raise Limits(max_rows=...)."
        )
    empty_rows = int(sum(s["n_raw"] for s in scans)) - n_rows
    if empty_rows:
        more_notes.append(f"Dropped {empty_rows} empty row(s).")
    meta = _load_piece(pieces[0], 0, spec=spec).iloc[:0]
    digest = hashlib.sha256()
    for scan in scans:
        digest.update(scan["hash"].encode("ascii"))
    return PartitionedTable(
        name=display,
        paths=tuple(paths),
        format=spec.format,
        columns=tuple(str(c) for c in meta.columns),
        dtypes={str(c): str(t) for c, t in meta.dtypes.items()},
        partition_rows=tuple(int(n) for n in counts),
        notes=(*notes, *more_notes),
        coercion_failures=failures,
        content_hash=digest.hexdigest(),
        _spec=spec,
        _pieces=tuple(pieces),
        _meta=meta,
    )


def _expand(display: str) -> list[str]:
    target = Path(display).expanduser()
    if any(ch in display for ch in "*?["):
        paths = sorted(p for p in globlib.glob(str(target)) if Path(p).is_file())
        where = f"No files match '{display}'"
    elif target.is_dir():
        known = _l._TEXT_EXTENSIONS | _l._PARQUET_EXTENSIONS
        paths = sorted(
            str(p)
            for p in target.iterdir()
            if p.is_file() and p.suffix.lower() in known and not p.name.startswith((".", "_"))
        )
        where = f"The folder '{display}' holds no .csv, .tsv, .txt or .parquet files"
    elif target.is_file():
        paths = [str(target)]
        where = ""
    else:
        raise DataError(f"'{display}' does not exist. Check the path and try again.")
    if not paths:
        raise DataError(f"{where}. Check the path, or give a glob such as 'data/*.csv'.")
    return paths


def _csv_spec(
    paths: list[str], forced: str | None, display: str
) -> tuple[list[_Piece], _Spec, list[str]]:
    heads: list[bytes] = []
    encodings: list[str] = []
    notes: list[str] = []
    for i, path in enumerate(paths):
        with open(path, "rb") as fh:
            raw = fh.read(_l._SAMPLE_BYTES + 1)
        if not raw or raw.isspace():
            raise DataError(
                f"'{path}' is empty. Remove it from the folder or give it a header row and data."
            )
        data, encoding, reported, decode_notes = _l._decode(raw, Path(path).name)
        if reported == "utf-16":
            raise DataError(
                f"'{path}' is UTF-16 text, which medimg reads only one file at a time. Re-save "
                "it as UTF-8 CSV to read it as part of a large table."
            )
        if encoding == "latin-1" and i == 0:
            notes.extend(decode_notes)
        encodings.append(encoding)
        heads.append(data)
    first = heads[0]
    text = _l._sample_text(first, encodings[0])
    if forced is not None and forced not in _l._DELIMITERS:
        raise ConfigError(
            f"Delimiter {forced!r} is not supported; use one of "
            f"{', '.join(repr(d) for d in _l._DELIMITERS)}."
        )
    suffix = Path(paths[0]).suffix.lower()
    preferred = ("\t", ",", ";", "|") if suffix in {".tsv", ".tab"} else _l._DELIMITERS
    delimiter = forced or _l._detect_delimiter(text, preferred)
    records = _l._records(text, delimiter)
    if not records:
        raise DataError(f"'{paths[0]}' has no header row. Add a first row with the column names.")
    names, header_notes = _l._clean_header(records[0][1], display)
    notes.extend(header_notes)
    if len(names) == 1:
        _l._check_single_column(names[0], delimiter, display)
    # The loader's sample runs on into the following files when the first one is short.
    sample = _joined_sample(paths, heads, encodings, delimiter)
    body = _l._records(sample, delimiter)[1:]
    decimal_comma = delimiter == ";" and _l._sample_has_decimal_comma(body)
    pins = _l._sample_dtypes(names, body, decimal_comma)
    for path, head, encoding in zip(paths[1:], heads[1:], encodings[1:], strict=True):
        other = _l._records(_l._sample_text(head, encoding), delimiter)
        theirs = _l._clean_header(other[0][1], path)[0] if other else []
        if theirs != names:
            raise DataError(
                f"'{path}' has different columns from '{paths[0]}' ({_diff(names, theirs)}). "
                "Every file of a table needs the same header, in the same order."
            )
    if forced is None and delimiter != ",":
        notes.append(f"Columns are {_l._DELIMITER_NAMES[delimiter]}-separated.")
    if decimal_comma:
        notes.append("Numbers use a decimal comma (1,5 = 1.5).")
    spec = _Spec(
        format="csv",
        names=tuple(names),
        delimiter=delimiter,
        encodings=tuple(encodings),
        pins=tuple(pins),
        decimal_comma=decimal_comma,
    )
    return [_Piece(path, None, i) for i, path in enumerate(paths)], spec, notes


def _joined_sample(
    paths: list[str], heads: list[bytes], encodings: list[str], delimiter: str
) -> str:
    joined = bytearray(heads[0][: _l._SAMPLE_BYTES + 1])
    for path, head in zip(paths[1:], heads[1:], strict=False):
        if len(joined) > _l._SAMPLE_BYTES:
            break
        if len(_l._records(joined.decode(encodings[0], "replace"), delimiter)) > (
            _l._SAMPLE_RECORDS
        ):
            break
        if Path(path).stat().st_size > len(head):
            head = head + b"\n"
        if joined and not joined.endswith((b"\n", b"\r")):
            joined += b"\n"
        cut = head.find(b"\n")
        joined += head[cut + 1 :] if cut >= 0 else b""
    return _l._sample_text(bytes(joined), encodings[0])


def _diff(ours: Sequence[str], theirs: Sequence[str]) -> str:
    missing = [c for c in ours if c not in theirs]
    extra = [c for c in theirs if c not in ours]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(repr(c) for c in missing[:5])}")
    if extra:
        parts.append(f"extra {', '.join(repr(c) for c in extra[:5])}")
    return "; ".join(parts) or "the same names in another order"


def _parquet_spec(
    paths: list[str], rows_per_partition: int, display: str
) -> tuple[list[_Piece], _Spec, list[str]]:
    import pyarrow.parquet as pq

    pieces: list[_Piece] = []
    schema = None
    for file_index, path in enumerate(paths):
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise DataError(
                f"'{path}' could not be read as Parquet ({_l._first_line(exc)}). Re-export it "
                "as Parquet, or remove it from the folder."
            ) from exc
        if schema is None:
            schema = parquet.schema_arrow
        elif not parquet.schema_arrow.remove_metadata().equals(schema.remove_metadata()):
            theirs = [str(n) for n in parquet.schema_arrow.names]
            raise DataError(
                f"'{path}' has different columns or types from '{paths[0]}' "
                f"({_diff([str(n) for n in schema.names], theirs)}). Every part of a table "
                "needs the same schema."
            )
        group: list[int] = []
        rows = 0
        for i in range(parquet.metadata.num_row_groups):
            group.append(i)
            rows += parquet.metadata.row_group(i).num_rows
            if rows >= rows_per_partition:
                pieces.append(_Piece(path, tuple(group), file_index))
                group, rows = [], 0
        if group or parquet.metadata.num_row_groups == 0:
            pieces.append(_Piece(path, tuple(group), file_index))
    assert schema is not None
    first = _read_raw(pieces[0], _Spec(format="parquet", names=()), all_text=False)
    names, notes = _l._clean_header([str(c) for c in first.columns], display)
    return pieces, _Spec(format="parquet", names=tuple(names)), list(notes)


def _read_raw(piece: _Piece, spec: _Spec, *, all_text: bool) -> pd.DataFrame:
    """A partition as pandas reads it, before the loader's tidying."""
    if spec.format == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(piece.path)
            groups = list(piece.row_groups or ())
            table = (
                parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table()
            )
            frame = table.to_pandas()
        except Exception as exc:
            raise DataError(
                f"'{piece.path}' could not be read as Parquet ({_l._first_line(exc)}). "
                "Re-export it as Parquet or CSV."
            ) from exc
        frame = frame.reset_index(drop=isinstance(frame.index, pd.RangeIndex))
        if spec.names:
            frame = frame.set_axis(list(spec.names), axis=1)
        return frame
    encoding = spec.encodings[piece.file_index]
    names = list(spec.names)
    pinned = set(spec.pins) | {c for c, d in spec.decisions if d in ("text", "int", "float", "nan")}
    dtypes = dict.fromkeys(names, "str") if all_text else dict.fromkeys(pinned & set(names), "str")
    try:
        return pd.read_csv(
            piece.path,
            sep=spec.delimiter,
            encoding=encoding,
            header=0,
            names=names,
            index_col=False,
            dtype=dtypes,
            na_values=sorted(_l.MISSING_TOKENS),
            keep_default_na=False,
            decimal="," if spec.decimal_comma else ".",
            on_bad_lines="error",
            low_memory=False,
            engine="c",
        )
    except UnicodeDecodeError as exc:
        raise DataError(
            f"'{piece.path}' is not valid {encoding} text throughout ({exc.reason} at byte "
            f"{exc.start:,}). Re-save it as UTF-8 CSV."
        ) from exc
    except Exception as exc:
        raise DataError(
            f"'{piece.path}' could not be read as a "
            f"{_l._DELIMITER_NAMES[cast(str, spec.delimiter)]}-separated table "
            f"({_l._first_line(exc)}). Check that its rows have as many fields as the header "
            "and that values containing the delimiter are quoted."
        ) from exc


def _text(series: pd.Series) -> pd.Series | None:
    """Stripped text with missing tokens blanked, or None when the column holds no text."""
    if series.dtype == object:
        inferred = series.infer_objects()
        if not pd.api.types.is_string_dtype(inferred.dtype):
            if series.notna().any():
                return None
            return series.astype("str")
    text = _l._as_text(series)
    if text is None:
        return None
    text = text.str.strip()
    return text.mask(text.isin(_l.MISSING_TOKENS))


def _scan_piece(piece: _Piece, spec: _Spec) -> dict[str, Any]:
    """Everything about one partition that the whole-table decisions need (small)."""
    inferred = _read_raw(piece, spec, all_text=False)
    out: dict[str, Any] = {
        "n_raw": len(inferred),
        "hash": _l.frame_hash(inferred),
        "kinds": {},
        "text": {},
        "notna": {},
        "empty_columns": [],
    }
    texts = _read_raw(piece, spec, all_text=True) if spec.format == "csv" else inferred
    any_value = np.zeros(len(inferred), dtype=bool)
    any_number = np.zeros(len(inferred), dtype=bool)
    for column in spec.names:
        series = inferred[column]
        if spec.format == "csv" and column not in spec.pins:
            kind = series.dtype.kind
            out["kinds"][column] = "empty" if kind == "f" and not series.notna().any() else kind
        text = _text(texts[column])
        if text is None:
            if series.dtype == object and series.notna().any():
                raise DataError(
                    f"Column '{column}' of '{piece.path}' holds values that are neither text "
                    "nor numbers. Convert them to text or numbers before reading the table in "
                    "parts."
                )
            present = series.notna().to_numpy()
            out["notna"][column] = int(present.sum())
            any_value |= present
            any_number |= present
            continue
        stats = _text_stats(text, spec.decimal_comma)
        out["text"][column] = stats
        present = text.notna().to_numpy()
        any_value |= present
        # A value C-parsed as a number may still fail medimg's stricter number rule ("inf"):
        # such rows count as possibly empty, and are then counted exactly.
        any_number |= stats.pop("parsed_rows")
    out["empty"] = int((~any_value).sum())
    out["maybe_empty"] = int((any_value & ~any_number).sum())
    return out


def _text_stats(text: pd.Series, decimal_comma: bool) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    present = text.dropna()
    numbers = _l._parse_numbers(text, decimal_comma)
    parsed = (numbers.notna() & text.notna()).to_numpy()
    failed = text[text.notna().to_numpy() & ~parsed]
    integer = True
    if len(present):
        values = pa.array(present.astype("str").array)
        if decimal_comma:
            values = pc.replace_substring(values, ",", ".")
        integer = bool(pc.all(pc.match_substring_regex(values, _l._INTEGER)).as_py())
        if integer:
            try:
                pc.cast(values, pa.int64())
            except pa.ArrowInvalid:
                integer = False
    return {
        "present": len(present),
        "parsed": int(parsed.sum()),
        "bits": np.packbits(parsed[text.notna().to_numpy()]),
        "padded": bool(present.str.match(_l._ZERO_PADDED).any()) if len(present) else False,
        "missing": int(text.isna().sum()),
        "failed": len(failed),
        "examples": tuple(str(v) for v in _distinct(failed, 5)),
        "integer": integer,
        "parsed_rows": parsed,
    }


def _decide(
    spec: _Spec, scans: list[dict[str, Any]], display: str
) -> tuple[_Spec, list[int], list[str], dict[str, tuple[int, tuple[str, ...]]]]:
    """The loader's whole-column decisions, from the partitions' exact counts."""
    decisions: dict[str, str] = {}
    notes: list[str] = []
    failures: dict[str, tuple[int, tuple[str, ...]]] = {}
    notna: dict[str, int] = {}
    for column in spec.names:
        kinds = [s["kinds"][column] for s in scans if column in s["kinds"]]
        if spec.format == "csv" and column not in spec.pins:
            real = {k for k in kinds if k != "empty"}
            if not real:
                decisions[column] = "nan"
                continue
            if real <= {"i", "f"} and (real != {"i"} or "empty" in kinds):
                decisions[column] = "cast"
                notna[column] = 1
                continue
            if len(real) == 1 and real <= {"i", "u", "b", "f"}:
                notna[column] = 1
                continue
        parts = [s["text"].get(column) for s in scans]
        if not all(p is not None for p in parts):
            notna[column] = sum(int(s["notna"].get(column, 0)) for s in scans)
            continue
        decision, note, failed = _decide_text(column, cast(list[dict[str, Any]], parts))
        decisions[column] = decision
        notna[column] = 1 if decision in ("text", "int") else sum(p["parsed"] for p in parts)
        if note:
            notes.append(note)
        if failed is not None:
            failures[column] = failed
    dropped = tuple(
        c
        for c in spec.names
        if re.fullmatch(r"column_\d+", c) and (decisions.get(c) == "nan" or not notna.get(c, 0))
    )
    if dropped:
        notes.append(f"Dropped {len(dropped)} empty column(s) without a name.")
    spec = replace(spec, decisions=tuple(decisions.items()), dropped=dropped)
    if len(dropped) == len(spec.names):
        raise DataError(
            f"Every value in '{display}' is missing (empty or a token such as NA, ?, null). "
            "Check that you chose the right files and that they were exported with their values."
        )
    counts = [int(s["n_raw"]) - int(s["empty"]) for s in scans]
    return spec, counts, notes, failures


def _decide_text(
    column: str, parts: list[dict[str, Any]]
) -> tuple[str, str | None, tuple[int, tuple[str, ...]] | None]:
    """:func:`medimg_core.tables.loading._tidy_column` on the whole column, from counts."""
    present = sum(p["present"] for p in parts)
    if present == 0:
        return "nan", None, None
    step = max(1, present // _l._CHECK_VALUES)
    bits = np.concatenate(
        [np.unpackbits(p["bits"], count=p["present"]).astype(bool) for p in parts]
    )
    if bits[::step].mean() < 0.5:
        return "text", None, None
    parsed = sum(p["parsed"] for p in parts)
    share = parsed / present
    if share < _l._NUMERIC_SHARE:
        kept = (
            f"Column '{column}' is mostly numbers ({share:.0%}) but was kept as text because "
            f"too many values are not numbers; correct them to use '{column}' as a number."
        )
        return "text", kept if present >= _l._NOTE_MIN_VALUES else None, None
    if any(p["padded"] for p in parts):
        return "text", None, None
    n_failed = sum(p["failed"] for p in parts)
    whole = all(p["integer"] for p in parts) and not any(p["missing"] for p in parts)
    decision = "int" if whole and not n_failed else "float"
    if not n_failed:
        return decision, None, None
    examples = tuple(dict.fromkeys(e for p in parts for e in p["examples"]))[:5]
    shown = ", ".join(repr(e) for e in examples)
    note = (
        f"Column '{column}' was read as numbers; {n_failed} value(s) that are not "
        f"numbers are now missing (for example {shown})."
    )
    return decision, note, (n_failed, examples)


def _convert(raw: pd.DataFrame, spec: _Spec, offset: int) -> pd.DataFrame:
    """Apply the whole-table decisions to one partition; index = row numbers from ``offset``."""
    frame = raw.reset_index(drop=True)
    for column, decision in spec.decisions:
        if column in spec.dropped:
            continue
        series = frame[column]
        if decision == "nan":
            frame[column] = pd.Series(np.nan, index=frame.index, dtype="float64")
        elif decision == "cast":
            frame[column] = series.astype("float64")
        elif decision in ("text", "int", "float"):
            text = _text(series)
            assert text is not None
            if decision == "text":
                frame[column] = text
            else:
                numbers = _l._parse_numbers(text, spec.decimal_comma)
                frame[column] = numbers.astype("int64" if decision == "int" else "float64")
    if spec.dropped:
        frame = frame.drop(columns=list(spec.dropped))
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.any():
        frame = frame.loc[~empty].reset_index(drop=True)
    frame.index = pd.RangeIndex(offset, offset + len(frame)) if len(frame) else frame.index
    return frame


def _load_piece(piece: _Piece, offset: int, *, spec: _Spec) -> pd.DataFrame:
    return _convert(_read_raw(piece, spec, all_text=False), spec, offset)


def _count_piece(piece: _Piece, spec: _Spec) -> int:
    return len(_load_piece(piece, 0, spec=spec))


def _delayed(fn: Callable[..., Any], nout: int | None = None) -> Any:
    import dask

    return dask.delayed(fn, pure=True, nout=nout)


def _run(tasks: Sequence[Any]) -> list[Any]:
    """Compute Dask objects where the engine in force runs (its client, or threads here)."""
    import dask

    if not tasks:
        return []
    engine = compute.current()
    scheduler: Any = engine.client if engine.distributed else "threads"
    with dask.config.set({"dataframe.convert-string": False}):
        return list(dask.compute(*tasks, scheduler=scheduler))


def _tree(parts: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """Pairwise combination on the workers, in a fixed order: the client gets one result."""
    while len(parts) > 1:
        parts = [
            _delayed(combine)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


def _pieces(table: PartitionedTable) -> list[tuple[_Piece, int]]:
    return list(zip(table._pieces, table.offsets, strict=True))


def profile_partitioned(table: PartitionedTable, *, label: str | None = None) -> PartitionedProfile:
    """Missing values, numeric range and mean per column, and class counts of ``label``.

    Computed on each partition where the engine runs; only the per-column sums come back. The
    mean is a ``math.fsum`` of per-partition ``fsum`` totals (identical on any cluster).
    """
    if label is not None and label not in table.columns:
        raise DataError(_c._missing_column_message("Label", label, pd.Index(table.columns)))
    parts = _run([_delayed(_profile_piece)(p, o, table._spec, label) for p, o in _pieces(table)])
    rows = []
    n = table.n_rows
    for column in table.columns:
        notna = sum(p["notna"][column] for p in parts)
        row: dict[str, Any] = {
            "column": column,
            "dtype": table.dtypes[column],
            "missing": n - notna,
            "missing_share": (n - notna) / n if n else 0.0,
            "min": np.nan,
            "max": np.nan,
            "mean": np.nan,
        }
        if column in parts[0]["numeric"]:
            stats = [p["numeric"][column] for p in parts if p["numeric"][column][2]]
            if stats:
                row["min"] = min(s[0] for s in stats)
                row["max"] = max(s[1] for s in stats)
                count = sum(s[2] for s in stats)
                row["mean"] = math.fsum(s[3] for s in stats) / count
        rows.append(row)
    counts: dict[Any, int] = {}
    for p in parts:
        for value, k in p["classes"]:
            counts[value] = counts.get(value, 0) + k
    ordered: list[tuple[Any, int]] = sorted(counts.items(), key=_by_count)
    classes = pd.DataFrame(
        ordered,
        columns=["label", "rows"],
    )
    return PartitionedProfile(n_rows=n, columns=pd.DataFrame(rows), class_counts=classes)


def _by_count(item: tuple[Any, int]) -> tuple[int, str]:
    return -int(item[1]), str(item[0])


def _profile_piece(piece: _Piece, offset: int, spec: _Spec, label: str | None) -> dict[str, Any]:
    df = _load_piece(piece, offset, spec=spec)
    numeric = {}
    for column in df.columns:
        if _c._is_numeric(df[column]):
            values = df[column].to_numpy(dtype="float64", na_value=np.nan)
            values = values[np.isfinite(values)]
            numeric[column] = (
                (float(values.min()), float(values.max()), values.size, math.fsum(values))
                if values.size
                else (np.nan, np.nan, 0, 0.0)
            )
    classes = []
    if label is not None:
        classes = [(v, int(k)) for v, k in df[label].value_counts(sort=False).items()]
    return {
        "notna": {c: int(df[c].notna().sum()) for c in df.columns},
        "numeric": numeric,
        "classes": classes,
    }


def sample_rows(table: PartitionedTable, n: int, seed: int = 0) -> pd.DataFrame:
    """A uniform random sample of ``n`` rows (all rows if the table is smaller), for plots.

    The row numbers are drawn from ``seed`` alone and picked from each partition, so the same
    rows come back wherever this runs; the index is the row number, in input order.
    """
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"A sample needs a whole number of rows, got {n!r}; use e.g. 10000.")
    total = table.n_rows
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(total, size=min(n, total), replace=False)).astype(np.int64)
    tasks = []
    for (piece, offset), rows in zip(_pieces(table), table.partition_rows, strict=True):
        mine = picked[(picked >= offset) & (picked < offset + rows)]
        if mine.size:
            tasks.append(_delayed(_take_piece)(piece, offset, table._spec, mine))
    frames = _run(tasks)
    return pd.concat(frames) if frames else table.meta


def _take_piece(piece: _Piece, offset: int, spec: _Spec, rows: npt.NDArray[np.int64]) -> Any:
    return _load_piece(piece, offset, spec=spec).loc[rows]


@dataclass(frozen=True)
class _Ctx:
    """What every partition needs to apply the cleaning rules (small, sent with each task)."""

    spec: _Spec
    roles: Roles
    plan: CleaningPlan
    label: str | None
    quality: str | None
    features: tuple[Hashable, ...]
    kept_features: tuple[Hashable, ...]
    split_column: str | None
    dropped: tuple[Hashable, ...]


def _early_codes(df: pd.DataFrame, ctx: _Ctx) -> npt.NDArray[np.int8]:
    """Reason codes of the rules that look at one row only and run before duplicates."""
    code = np.full(len(df), -1, dtype=np.int8)
    if ctx.label is not None:
        code[_c._missing_labels(df[ctx.label])] = 0
    if ctx.plan.missing == "drop" and ctx.kept_features:
        missing_any = np.zeros(len(df), dtype=bool)
        for column in ctx.kept_features:
            missing_any |= df[column].isna().to_numpy()
        code[missing_any & (code < 0)] = 1
    return code


def _late_codes(df: pd.DataFrame, ctx: _Ctx) -> npt.NDArray[np.int8]:
    """Reason codes of the one-row rules that run after duplicates (quality, then range)."""
    code = np.full(len(df), -1, dtype=np.int8)
    if ctx.quality is not None:
        acceptable = ctx.plan.acceptable_quality or _c.DEFAULT_ACCEPTABLE_QUALITY
        code[~_c._acceptable_quality(df[ctx.quality], acceptable)] = 3
    if ctx.plan.ranges and ctx.plan.range_action == "drop":
        outside, _ = _c._range_flags(df, ctx.plan.ranges, np.ones(len(df), dtype=bool))
        code[outside & (code < 0)] = 4
    return code


def _stable_hash(df: pd.DataFrame, columns: Sequence[Hashable]) -> npt.NDArray[np.uint64]:
    """:func:`cleaning._row_hash` with text hashed by content, so equal rows in different
    partitions get equal hashes (the in-memory hash numbers text by order of appearance)."""
    row = np.zeros(len(df), dtype=np.uint64)
    for column in columns:
        series = df[column]
        bits: npt.NDArray[np.uint64]
        if pd.api.types.is_numeric_dtype(series.dtype):
            bits = _c._column_bits(series)
        else:
            hashed = pd.util.hash_pandas_object(series, index=False)
            bits = np.asarray(hashed.to_numpy(dtype=np.uint64), dtype=np.uint64)
        with np.errstate(over="ignore"):
            row *= _c._GOLDEN
        row ^= bits
        _c._mix_inplace(row)
    return row


def _distinct(values: Any, cap: int) -> list[Any]:
    """The first ``cap`` distinct non-missing values, in order of appearance."""
    series = pd.Series(values).dropna()
    found: list[Any] = []
    while len(series) and len(found) < cap:
        found.append(series.iloc[0])
        # Vectorised "skip every copy of that value": no hash table over a column of IDs.
        series = series[series != found[-1]]
    return found


def _scan_columns(piece: _Piece, offset: int, ctx: _Ctx) -> dict[str, Any]:
    """Whole-input facts: missing counts, constant/empty columns, split values, classes."""
    return _column_facts(_load_piece(piece, offset, spec=ctx.spec), ctx)


def _column_facts(df: pd.DataFrame, ctx: _Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(df), "notna": {}, "range": {}, "distinct": {}, "split": []}
    for column in df.columns:
        series = df[column]
        out["notna"][column] = int(series.notna().sum())
        if _c._is_numeric(series):
            values = series.to_numpy(dtype="float64", na_value=np.nan)
            finite = values[np.isfinite(values)]
            out["range"][column] = (
                float(np.fmin.reduce(values)) if values.size else np.nan,
                float(np.fmax.reduce(values)) if values.size else np.nan,
                float(finite.min()) if finite.size else np.nan,
                float(finite.max()) if finite.size else np.nan,
            )
        else:
            out["distinct"][column] = _distinct(series, 2)
    if "split" in df.columns:
        out["split"] = sorted({str(v).strip().lower() for v in pd.unique(df["split"].dropna())})[
            : _SPLIT_CAP + 1
        ]
    if ctx.label is not None:
        labels = df[ctx.label]
        has = ~_c._missing_labels(labels)
        out["classes"] = [(v, int(k)) for v, k in labels[has].value_counts(sort=False).items()]
    return out


def _levels_stats(values: npt.NDArray[np.float64]) -> tuple[bool, list[float] | None, float, float]:
    """(all whole numbers, distinct values or None when more than the cap, min, max)."""
    values = values[np.isfinite(values)]
    whole = bool(np.all(values == np.round(values)))
    distinct = np.unique(values) if whole else np.array([])
    levels = [float(v) for v in distinct] if whole and distinct.size <= _LEVELS_CAP else None
    low = float(values.min()) if values.size else np.nan
    high = float(values.max()) if values.size else np.nan
    return whole, levels, low, high


def _scan_reference(piece: _Piece, offset: int, ctx: _Ctx) -> dict[str, Any]:
    """Facts on the rows that reach the duplicate rule (development part only)."""
    return _reference_facts(_load_piece(piece, offset, spec=ctx.spec), ctx)


def _reference_facts(df: pd.DataFrame, ctx: _Ctx) -> dict[str, Any]:
    code = _early_codes(df, ctx)
    reference = (code < 0) & ~_c._test_rows(df, ctx.split_column)
    levels = {
        c: _levels_stats(df[c].to_numpy(dtype="float64", na_value=np.nan)[reference])
        for c in ctx.kept_features
        if _c._is_numeric(df[c])
    }
    missing_any = int((code == 1).sum()) if ctx.plan.missing == "drop" else 0
    if ctx.plan.missing == "drop" and ctx.kept_features:
        any_missing = np.zeros(len(df), dtype=bool)
        for column in ctx.kept_features:
            any_missing |= df[column].isna().to_numpy()
        missing_any = int(any_missing.sum())
    return {"reference": int(reference.sum()), "levels": levels, "missing_any": missing_any}


def _scan_and_hash(piece: _Piece, offset: int, ctx: _Ctx, buckets: int) -> tuple[Any, ...]:
    """:func:`_scan_columns` and the rows' feature hashes split into ``buckets`` by value, from
    one read of the partition (the hashes stay on the workers)."""
    df = _load_piece(piece, offset, spec=ctx.spec)
    hashes = _stable_hash(df, ctx.features)
    bucket = hashes % np.uint64(buckets)
    return (_column_facts(df, ctx), *(hashes[bucket == b] for b in range(buckets)))


def _repeated_hashes(*parts: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The hash values of one bucket that occur on more than one row of the whole table."""
    values, counts = np.unique(np.concatenate(parts), return_counts=True)
    return values[counts > 1]


def _reference_and_candidates(
    piece: _Piece, offset: int, ctx: _Ctx, buckets: int, repeated: npt.NDArray[np.uint64]
) -> tuple[Any, ...]:
    """:func:`_scan_reference`, and the rows that may have a copy anywhere in the table (their
    feature hash occurs more than once), prepared for :func:`_cases` and split by hash bucket.
    Every rule comparing rows looks only at rows sharing a feature hash, so the other rows
    cannot change its outcome and are not moved between workers."""
    df = _load_piece(piece, offset, spec=ctx.spec)
    facts = _reference_facts(df, ctx)
    hashes = _stable_hash(df, ctx.features)
    picked = np.isin(hashes, repeated)
    prepared = _prepare(df[picked], ctx)
    bucket = hashes[picked] % np.uint64(buckets)
    return (facts, *(prepared[bucket == b] for b in range(buckets)))


def _bucket_cases(ctx: _Ctx, group_column: str, *frames: pd.DataFrame) -> dict[str, Any]:
    """:func:`_cases` on one bucket's candidate rows from every partition, in input order."""
    return _cases(pd.concat(frames), ctx, group_column)


def _merge_levels(stats: list[tuple[bool, list[float] | None, float, float]]) -> tuple[bool, int]:
    """``cleaning._levels`` from per-partition stats: (whole, distinct count or -1)."""
    if not all(s[0] for s in stats):
        return False, -1
    if any(s[1] is None for s in stats):
        return True, _LEVELS_CAP + 1
    return True, len({v for s in stats for v in cast(list[float], s[1])})


def _prepare(df: pd.DataFrame, ctx: _Ctx) -> pd.DataFrame:
    out = df.copy()
    out["__medimg_hash"] = _stable_hash(df, ctx.features)
    out["__medimg_early"] = _early_codes(df, ctx)
    out["__medimg_late"] = _late_codes(df, ctx)
    out["__medimg_test"] = _c._test_rows(df, ctx.split_column)
    return out


_HELPERS = ["__medimg_hash", "__medimg_early", "__medimg_late", "__medimg_test"]


def _cases(part: pd.DataFrame, ctx: _Ctx, group_column: str) -> dict[str, Any]:
    """The rules comparing rows, on one hash partition (every copy of a record is here)."""
    part = part.sort_index(kind="stable")
    df = part.drop(columns=_HELPERS)
    hashes = part["__medimg_hash"].to_numpy(dtype=np.uint64)
    alive = part["__medimg_early"].to_numpy() < 0
    late_ok = part["__medimg_late"].to_numpy() < 0
    in_test = part["__medimg_test"].to_numpy(dtype=bool)
    listing, _ = _c._duplicate_records(
        df,
        ctx.roles,
        "drop",
        hashes,
        alive,
        unidentified_repeats=lambda: True,
        split_column=ctx.split_column,
    )
    later = {
        "all": listing["row"].to_numpy(),
        "id": listing.loc[listing["kind"] == "same ID", "row"].to_numpy(),
        "none": listing["row"].to_numpy()[:0],
    }
    variants = {"drop": ("all",), "keep": ("none",), "auto": ("id", "all")}[ctx.plan.duplicates]
    out: dict[str, Any] = {"listing": listing, "conflicts": {}, "across": {}}
    if ctx.label is None:
        return out
    for variant in variants:
        kept = alive & late_ok & ~np.isin(df.index.to_numpy(), later[variant])
        rows = np.flatnonzero(kept)
        out["conflicts"][variant] = _c._label_conflicts(
            df, list(ctx.features), ctx.label, hashes, rows, group_column
        )
        if ctx.split_column is not None:
            out["across"][variant] = _c._across_split(
                df, list(ctx.features), ctx.label, hashes, rows, in_test
            )
    return out


def _finish_piece(
    piece: _Piece,
    offset: int,
    index: int,
    ctx: _Ctx,
    duplicate_rows: npt.NDArray[np.int64],
    folder: str,
    reason_column: str,
) -> dict[str, Any]:
    """Final reason per row; the kept rows are written as one Parquet part."""
    df = _load_piece(piece, offset, spec=ctx.spec)
    code = _early_codes(df, ctx)
    code[(code < 0) & np.isin(df.index.to_numpy(), duplicate_rows)] = 2
    late = _late_codes(df, ctx)
    before_range = (code < 0) & (late != 3)
    code = np.where(code < 0, late, code).astype(np.int8)
    alive = code < 0
    range_flags = _c._empty_flags(df.index)
    if ctx.plan.ranges:
        _, range_flags = _c._range_flags(df, ctx.plan.ranges, before_range)
    removed = df[~alive].copy()
    names = np.array(REMOVAL_RULES, dtype=object)
    removed[reason_column] = pd.Series(names[code[~alive]], index=removed.index, dtype="str")
    kept = df[alive]
    if ctx.dropped:
        kept = kept.drop(columns=list(ctx.dropped))
    name = f"part-{index:05d}.parquet"
    # The row numbers go along as the index, as the in-memory `medimg clean` writes them.
    kept.to_parquet(os.path.join(folder, name))
    in_test = _c._test_rows(df, ctx.split_column)[alive]
    pd.DataFrame({"row": kept.index.to_numpy(dtype=np.int64), "test": in_test}).to_parquet(
        os.path.join(folder, "_side", name), index=False
    )
    by_rule: dict[int, list[tuple[Any, int]]] = {}
    after: list[tuple[Any, int]] = []
    if ctx.label is not None:
        labels = df[ctx.label]
        has = ~_c._missing_labels(labels)
        after = [(v, int(k)) for v, k in labels[alive & has].value_counts(sort=False).items()]
        for rule in range(len(REMOVAL_RULES)):
            hit = (code == rule) & has
            if hit.any():
                by_rule[rule] = [
                    (v, int(k)) for v, k in labels[hit].value_counts(sort=False).items()
                ]
    numeric = [c for c in ctx.kept_features if _c._is_numeric(df[c])]
    fit = alive & ~_c._test_rows(df, ctx.split_column)
    finite = {}
    top = {}
    for column in numeric:
        values = df[column].to_numpy(dtype="float64", na_value=np.nan)
        values = values[fit]
        values = values[np.isfinite(values)]
        finite[column] = int(values.size)
        # The first radix histogram of the outlier median, from this read (sparse: few bins).
        top[column] = np.unique(
            (_sort_keys(values) >> np.uint64(64 - _HIST_BITS)).astype(np.int64),
            return_counts=True,
        )
    return {
        "part": name,
        "kept": int(alive.sum()),
        "codes": np.bincount(code[code >= 0], minlength=len(REMOVAL_RULES)),
        "removed": removed,
        "range_flags": range_flags,
        "after": after,
        "by_rule": by_rule,
        "levels": {
            c: _levels_stats(df[c].to_numpy(dtype="float64", na_value=np.nan)[alive])
            for c in numeric
        },
        "fit": finite,
        "top": top,
    }


def _sort_keys(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    """Unsigned integers in the same order as the (finite) floats: radix selection works on them."""
    bits = (values + 0.0).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _fit_values(
    folder: str,
    name: str,
    column: str,
    centre: float | None,
    test: Any = None,
    frame: pd.DataFrame | None = None,
) -> npt.NDArray[np.float64]:
    """The values an outlier limit is learnt from (kept, development rows, finite); ``frame``:
    the part's columns already read."""
    if frame is None:
        frame = pd.read_parquet(os.path.join(folder, name), columns=[column])
    values = frame[column]
    if test is None:
        test = _test_mask(folder, name)
    out = values.to_numpy(dtype="float64", na_value=np.nan)[~test]
    out = out[np.isfinite(out)]
    if centre is not None:
        # The same operations as cleaning._robust_centre_scale, value by value.
        out = np.abs(np.subtract(out, centre))
    return out


def _test_mask(folder: str, name: str) -> npt.NDArray[np.bool_]:
    test = pd.read_parquet(os.path.join(folder, "_side", name), columns=["test"])["test"]
    return np.asarray(test.to_numpy(dtype=bool), dtype=bool)


_Target = tuple[str, int, int]  # column, known leading bits, their value


def _read_columns(folder: str, name: str, targets: tuple[_Target, ...]) -> pd.DataFrame:
    """The target columns of one part in a single Parquet read."""
    columns = list(dict.fromkeys(column for column, _, _ in targets))
    return pd.read_parquet(os.path.join(folder, name), columns=columns)


def _hist_part(
    folder: str, name: str, targets: tuple[_Target, ...], centres: dict[str, float]
) -> npt.NDArray[np.int64]:
    out = np.zeros((len(targets), 1 << _HIST_BITS), dtype=np.int64)
    cache: dict[str, npt.NDArray[np.uint64]] = {}
    test = _test_mask(folder, name)
    frame = _read_columns(folder, name, targets)
    for i, (column, known, prefix) in enumerate(targets):
        if column not in cache:
            values = _fit_values(folder, name, column, centres.get(column), test, frame)
            cache[column] = _sort_keys(values)
        keys = cache[column]
        if known:
            keys = keys[(keys >> np.uint64(64 - known)) == np.uint64(prefix)]
        shift = np.uint64(64 - known - _HIST_BITS)
        digits = ((keys >> shift) & np.uint64((1 << _HIST_BITS) - 1)).astype(np.int64)
        out[i] = np.bincount(digits, minlength=1 << _HIST_BITS)
    return out


def _gather_part(
    folder: str, name: str, targets: tuple[_Target, ...], centres: dict[str, float]
) -> list[npt.NDArray[np.float64]]:
    out = []
    test = _test_mask(folder, name)
    frame = _read_columns(folder, name, targets)
    for column, known, prefix in targets:
        values = _fit_values(folder, name, column, centres.get(column), test, frame)
        keys = _sort_keys(values)
        out.append(values[(keys >> np.uint64(64 - known)) == np.uint64(prefix)])
    return out


def _add(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return a + b


def _order_statistics(
    folder: str,
    names: list[str],
    wanted: dict[str, list[int]],
    centres: dict[str, float],
    initial: dict[str, npt.NDArray[np.int64]] | None = None,
) -> dict[tuple[str, int], float]:
    """The exact ``rank``-th smallest fit value (0-based) of each column, without gathering
    the column: histograms of the next 16 bits of the sortable key narrow each rank to one bin,
    whose values are gathered once few enough remain. ``initial``: the first histogram (leading
    16 bits) of each column, already counted."""
    state = {(c, r): (0, 0, r) for c, ranks in wanted.items() for r in ranks}
    found: dict[tuple[str, int], float] = {}
    while state:
        targets = tuple(dict.fromkeys((c, k, p) for (c, _), (k, p, _) in state.items()))
        if initial is not None and all(known == 0 for _, known, _ in targets):
            hists = np.stack([initial[column] for column, _, _ in targets])
        else:
            hists = _run(
                [_tree([_delayed(_hist_part)(folder, n, targets, centres) for n in names], _add)]
            )[0]
        initial = None
        where = {t: i for i, t in enumerate(targets)}
        to_gather: dict[tuple[str, int], tuple[_Target, int]] = {}
        for key, (known, prefix, rank) in list(state.items()):
            hist = hists[where[(key[0], known, prefix)]]
            cumulative = np.cumsum(hist)
            digit = int(np.searchsorted(cumulative, rank, side="right"))
            rank -= int(cumulative[digit - 1]) if digit else 0
            known += _HIST_BITS
            prefix = (prefix << _HIST_BITS) | digit
            if known == 64:
                bits = np.uint64(prefix)
                raw = ~bits if not bits >> np.uint64(63) else bits & ~np.uint64(1 << 63)
                found[key] = float(np.array([raw], dtype=np.uint64).view(np.float64)[0])
                del state[key]
            elif int(hist[digit]) <= _GATHER_MAX:
                to_gather[key] = ((key[0], known, prefix), rank)
                del state[key]
            else:
                state[key] = (known, prefix, rank)
        if to_gather:
            wanted_targets = tuple(dict.fromkeys(t for t, _ in to_gather.values()))
            parts = _run(
                [_delayed(_gather_part)(folder, n, wanted_targets, centres) for n in names]
            )
            for key, (target, rank) in to_gather.items():
                i = wanted_targets.index(target)
                values = np.sort(np.concatenate([p[i] for p in parts]), kind="stable")
                found[key] = float(values[rank])
    return found


def _abs_dev_sum(folder: str, name: str, column: str, centre: float) -> float:
    return math.fsum(_fit_values(folder, name, column, centre))


def _outlier_part(
    folder: str, name: str, limits: tuple[tuple[str, float, float, str], ...]
) -> list[pd.DataFrame]:
    rows = pd.read_parquet(os.path.join(folder, "_side", name), columns=["row"])["row"]
    index = pd.Index(rows.to_numpy(dtype=np.int64))
    out = []
    frame = pd.read_parquet(os.path.join(folder, name), columns=[c for c, *_ in limits])
    for column, low, high, detail in limits:
        values = frame[column].to_numpy(dtype="float64", na_value=np.nan)
        outlying = (values > high) | (values < low)
        out.append(_c._flag_frame(index, column, values, outlying, "outlier", detail))
    return out


def _outliers(
    folder: str,
    names: list[str],
    fit_counts: dict[str, int],
    z: float,
    first: dict[str, npt.NDArray[np.int64]] | None = None,
) -> pd.DataFrame:
    """``cleaning._outlier_flags`` with the exact median and MAD of the whole table; ``first``:
    each column's leading-16-bit histogram of its fit values, when already counted."""
    columns = [c for c, n in fit_counts.items() if n >= 3]
    if not columns:
        return _c._empty_flags(pd.RangeIndex(0))

    def ranks(n: int) -> list[int]:
        k = n // 2
        return [k] if n % 2 else [k - 1, k]

    def median(stats: dict[tuple[str, int], float], column: str) -> float:
        n = fit_counts[column]
        k = n // 2
        if n % 2:
            return stats[(column, k)]
        return (stats[(column, k - 1)] + stats[(column, k)]) / 2

    wanted = {c: ranks(fit_counts[c]) for c in columns}
    first_stats = _order_statistics(folder, names, wanted, {}, first)
    centres = {c: median(first_stats, c) for c in columns}
    second = _order_statistics(folder, names, wanted, centres)
    limits = []
    for column in columns:
        centre, mad = centres[column], median(second, column)
        if mad > 0:
            scale, scale_name = _c._MAD_SCALE * mad, "scaled MAD"
        else:
            sums = _run([_delayed(_abs_dev_sum)(folder, n, column, centre) for n in names])
            scale = _c._MEAN_AD_SCALE * (math.fsum(sums) / fit_counts[column])
            scale_name = "scaled mean absolute deviation"
        if scale == 0:
            continue
        detail = f"robust z > {z:g} (median {centre:.4g}, {scale_name} {scale:.4g})"
        limits.append((column, centre - z * scale, centre + z * scale, detail))
    if not limits:
        return _c._empty_flags(pd.RangeIndex(0))
    parts = _run([_delayed(_outlier_part)(folder, n, tuple(limits)) for n in names])
    frames = [p[i] for i in range(len(limits)) for p in parts]
    return _c._concat_flags(frames, pd.RangeIndex(0))


def _proxy(meta: pd.DataFrame, ranges: dict[Hashable, tuple[float, float]]) -> pd.DataFrame:
    """Two rows per column holding its finite minimum and maximum: what the note helpers of
    :mod:`cleaning` read from a table, without the table."""
    data = {}
    for column in meta.columns:
        if _c._is_numeric(meta[column]):
            low, high = ranges.get(column, (np.nan, np.nan))
            data[column] = pd.Series([low, high], dtype="float64")
        else:
            data[column] = pd.Series([None, None], dtype=object)
    return pd.DataFrame(data)


def _class_counts(pairs: Sequence[tuple[Any, int]], roles: Roles) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value, n in pairs:
        key = roles.class_name(value)
        counts[key] = counts.get(key, 0) + int(n)
    return dict(sorted(counts.items()))


def _value_counts_piece(piece: _Piece, offset: int, ctx: _Ctx, column: str) -> pd.DataFrame:
    df = _load_piece(piece, offset, spec=ctx.spec)
    reference = (_early_codes(df, ctx) < 0) & ~_c._test_rows(df, ctx.split_column)
    counts = df[column][reference].value_counts(dropna=False, sort=False)
    return pd.DataFrame({"value": counts.index, "n": counts.to_numpy(dtype=np.int64)})


def _chance(table: PartitionedTable, ctx: _Ctx, n: int) -> float:
    """``cleaning._chance_matches`` with exact global value counts (a Dask group-by)."""
    import dask.dataframe as dd

    if n < 2 or not ctx.kept_features:
        return 0.0
    log_chance = math.log(n * (n - 1) / 2)
    for column in ctx.kept_features:
        meta = pd.DataFrame(
            {"value": table._meta[column].iloc[:0], "n": pd.Series([], dtype="int64")}
        )
        counts = dd.from_delayed(
            [_delayed(_value_counts_piece)(p, o, ctx, str(column)) for p, o in _pieces(table)],
            meta=meta,
            verify_meta=False,
        )
        totals = counts.groupby("value", dropna=False)["n"].sum(split_out=table.n_partitions)
        squares = int(_run([(totals.astype("int64") ** 2).sum()])[0])
        log_chance += math.log(squares / (n * n))
        if log_chance < 0:
            break
    return math.exp(log_chance) if log_chance < 700 else math.inf


def _atomic_folder(output_dir: Path) -> Path:
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    (tmp / "_side").mkdir(parents=True)
    return tmp


def clean_partitioned(
    table: PartitionedTable,
    roles: Roles,
    plan: CleaningPlan = _c._DEFAULT_PLAN,
    output_dir: str | os.PathLike[str] = "cleaned",
    *,
    require_label: bool = True,
) -> PartitionedCleaning:
    """:func:`medimg_core.tables.cleaning.clean` on a partitioned table; see the module docstring.

    Parameters
    ----------
    table : from :func:`open_partitioned`.
    roles, plan, require_label : as for :func:`~medimg_core.tables.cleaning.clean`.
    output_dir : a folder for the kept rows (Parquet parts); written under a temporary name and
        renamed when complete, replacing a folder of that name.

    Returns
    -------
    PartitionedCleaning
        ``n_kept + n_removed == n_input``; the kept rows, read in part order, are exactly (and
        in the same order as) the rows ``clean`` keeps from the same table in memory.

    Raises
    ------
    DataError, ConfigError
        As :func:`~medimg_core.tables.cleaning.clean`; also when the output folder cannot be
        written (nothing is left behind).
    """
    meta = table._meta
    output = Path(output_dir).expanduser().absolute()
    if output.exists() and not output.is_dir():
        raise ConfigError(
            f"{output} is a file; the cleaned table is written as a folder of Parquet parts. "
            "Choose a folder name (an existing folder of that name is replaced)."
        )
    _c._validate_plan(meta, plan)
    label = roles.label if require_label else None
    if require_label:
        if label is None:
            raise ConfigError(
                "No label column was chosen. Set roles.label to the column holding the "
                "diagnosis, or clean with require_label=False for data to predict."
            )
        if label not in meta.columns:
            raise DataError(_c._missing_column_message("Label", label, meta.columns))
    notes: list[str] = []
    quality = _c.quality_column(plan, roles, meta.columns, require_label=require_label, notes=notes)
    notes.extend(plan.notes)
    features = _c._feature_columns(meta, roles, quality)
    ctx = _Ctx(table._spec, roles, plan, label, quality, tuple(features), (), None, ())

    # One read of each partition for the whole-input facts and the feature hashes; only the
    # hashes that occur on more than one row come back (the candidates for the row-comparing
    # rules), bucketed by value on the workers.
    buckets = table.n_partitions
    repeated = np.zeros(0, dtype=np.uint64)
    if features:
        hashed = [
            _delayed(_scan_and_hash, nout=1 + buckets)(p, o, ctx, buckets)
            for p, o in _pieces(table)
        ]
        done = _run(
            [
                *(h[0] for h in hashed),
                *(_delayed(_repeated_hashes)(*(h[1 + b] for h in hashed)) for b in range(buckets)),
            ]
        )
        scans = done[: len(hashed)]
        repeated = np.sort(np.concatenate(done[len(hashed) :]))
    else:
        scans = _run([_delayed(_scan_columns)(p, o, ctx) for p, o in _pieces(table)])
    n = table.n_rows
    column: Hashable
    notna: dict[Hashable, int] = {c: sum(s["notna"][c] for s in scans) for c in meta.columns}
    extremes: dict[Hashable, tuple[float, float]] = {}
    constant: dict[Hashable, bool] = {}
    for column in meta.columns:
        if _c._is_numeric(meta[column]):
            stats = [s["range"][column] for s in scans]
            low = np.fmin.reduce(np.array([s[0] for s in stats]))
            high = np.fmax.reduce(np.array([s[1] for s in stats]))
            constant[column] = bool(low == high)
            finite_low = np.fmin.reduce(np.array([s[2] for s in stats]))
            finite_high = np.fmax.reduce(np.array([s[3] for s in stats]))
            extremes[column] = (float(finite_low), float(finite_high))
        else:
            seen = _distinct([v for s in scans for v in s["distinct"][column]], 2)
            constant[column] = len(seen) == 1
    dropped: dict[Hashable, str] = {}
    if plan.drop_empty_columns or plan.drop_constant_columns:
        for column in features:
            if plan.drop_empty_columns and not notna[column]:
                dropped[column] = "empty"
            elif plan.drop_constant_columns and constant[column]:
                dropped[column] = "constant"
    kept_features = [c for c in features if c not in dropped]
    split_column = None
    if "split" in meta.columns and "split" in roles.non_feature_columns():
        values = {v for s in scans for v in s["split"]}
        if values and values <= _c._SPLIT_VALUES and values & set(_c._TEST_SPLITS):
            split_column = "split"
    ctx = replace(
        ctx,
        kept_features=tuple(kept_features),
        split_column=split_column,
        dropped=tuple(dropped),
    )

    group_column = _c._free_name("conflict_group", meta.columns)
    cases: list[dict[str, Any]] = []
    if features:
        # The row-comparing rules on the candidate rows only, every copy of a record in one
        # bucket (hash-partitioned), computed with the reference facts from one read.
        import dask

        shared = dask.delayed(repeated)
        candidates = [
            _delayed(_reference_and_candidates, nout=1 + buckets)(p, o, ctx, buckets, shared)
            for p, o in _pieces(table)
        ]
        done = _run(
            [
                *(c[0] for c in candidates),
                *(
                    _delayed(_bucket_cases)(ctx, group_column, *(c[1 + b] for c in candidates))
                    for b in range(buckets)
                ),
            ]
        )
        references, cases = done[: len(candidates)], done[len(candidates) :]
    else:
        references = _run([_delayed(_scan_reference)(p, o, ctx) for p, o in _pieces(table)])
    n_missing_any = sum(r["missing_any"] for r in references)
    too_many = n_missing_any > _c.IMPUTE_SUGGESTION_FRACTION * max(n, 1)
    if plan.missing == "drop" and kept_features and too_many:
        notes.append(
            f"Removing rows with a missing value (complete-case analysis) removed "
            f"{n_missing_any:,} of {n:,} rows. If the values are not missing at "
            "random this biases the data; imputation inside the model keeps these rows."
        )
    continuous = []
    for column in kept_features:
        if _c._is_numeric(meta[column]):
            whole, levels = _merge_levels([r["levels"][column] for r in references])
            if not whole or levels > _c.LOW_CARDINALITY_LEVELS:
                continuous.append(column)
    n_reference = sum(r["reference"] for r in references)
    chance_value: list[float] = []

    def chance() -> float:
        if not chance_value:
            chance_value.append(_chance(table, ctx, n_reference))
        return chance_value[0]

    listing = _c._empty_duplicates(meta.index)
    conflicts = _c._empty_conflicts(meta, group_column)
    contradictions = _c._empty_conflicts(meta, group_column)
    across = _c._empty_across(meta.index)
    duplicate_rows = np.zeros(0, dtype=np.int64)
    if features:
        listings = [c["listing"] for c in cases if len(c["listing"])]
        if listings:
            listing = pd.concat(listings).sort_values("row", kind="stable")
            listing = listing.reset_index(drop=True)
        unidentified = bool((listing["kind"] == "no ID").any())
        if plan.duplicates == "drop":
            removing = np.ones(len(listing), dtype=bool)
            variant = "all"
        elif plan.duplicates == "keep":
            removing = np.zeros(len(listing), dtype=bool)
            variant = "none"
        else:
            repeats = unidentified and bool(continuous) and chance() < 1
            removing = (listing["kind"] == "same ID").to_numpy() | repeats
            variant = "all" if repeats else "id"
        listing["action"] = pd.Series(
            np.where(removing, "removed", "kept"), index=listing.index, dtype="str"
        )
        duplicate_rows = np.sort(listing.loc[removing, "row"].to_numpy(dtype=np.int64))
        proxy = _proxy(meta, extremes)
        notes.extend(
            _c._duplicate_notes(listing, plan.duplicates, continuous, chance, proxy, kept_features)
        )
    else:
        notes.append("The table has no feature columns, so duplicates were not looked for.")

    reason_column = _c._free_name("reason", meta.columns)
    try:
        tmp = _atomic_folder(output)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the cleaned table to {output}: {exc.strerror or exc}. Choose a "
            "writable folder."
        ) from exc
    try:
        finished = _run(
            [
                _delayed(_finish_piece)(p, o, i, ctx, duplicate_rows, str(tmp), reason_column)
                for i, (p, o) in enumerate(_pieces(table))
            ]
        )
        names = [f["part"] for f in finished]
        numeric = [c for c in kept_features if _c._is_numeric(meta[c])]
        alive_ranges: dict[Hashable, tuple[float, float]] = {}
        scales = []
        for column in numeric:
            stats = [f["levels"][column] for f in finished]
            whole, levels = _merge_levels(stats)
            lows = [s[2] for s in stats if not math.isnan(s[2])]
            highs = [s[3] for s in stats if not math.isnan(s[3])]
            if lows:
                alive_ranges[column] = (min(lows), max(highs))
            if whole and 0 < levels <= _c.LOW_CARDINALITY_LEVELS:
                low, high = alive_ranges[column]
                if high - low <= _c.LOW_CARDINALITY_LEVELS:
                    scales.append(column)
        if scales:
            text = _c._columns_text(scales, _proxy(meta, alive_ranges), np.ones(2, dtype=bool))
            notes.append(
                f"Outliers were not looked for in {text}: whole numbers on a short scale (at "
                f"most {_c.LOW_CARDINALITY_LEVELS} levels) are scores or codes, and the top or "
                "bottom of a bounded scale is not an outlier."
            )
        tested = [c for c in numeric if c not in scales]
        fit_counts = {str(c): sum(f["fit"][c] for f in finished) for c in tested}
        first_hists = {}
        for column in tested:
            hist = np.zeros(1 << _HIST_BITS, dtype=np.int64)
            for f in finished:
                digits, found = f["top"][column]
                hist[digits] += found
            first_hists[str(column)] = hist
        outlier_flags = _outliers(str(tmp), names, fit_counts, plan.outlier_z, first_hists)
        shutil.rmtree(tmp / "_side")
        if output.exists():
            trash = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(output, trash)
            os.replace(tmp, output)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    counts_array = np.sum([f["codes"] for f in finished], axis=0)
    counts = {rule: int(counts_array[i]) for i, rule in enumerate(REMOVAL_RULES)}
    removed_parts = [f["removed"] for f in finished if len(f["removed"])]
    if removed_parts:
        removed = pd.concat(removed_parts)
    else:
        removed = meta.copy()
        removed[reason_column] = pd.Series([], index=removed.index, dtype="str")
    range_flags = _concat_sorted([f["range_flags"] for f in finished], list(plan.ranges))
    flag_frames = [range_flags] if plan.ranges else []
    flag_frames.append(outlier_flags)

    if label is not None and features:
        pieces = [c["conflicts"].get(variant) for c in cases]
        found = [p for p in pieces if p is not None and len(p)]
        if found:
            rows = pd.concat(found).sort_index(kind="stable").drop(columns=[group_column])
            conflicts = _c._label_conflicts(
                rows,
                features,
                label,
                _stable_hash(rows, features),
                np.arange(len(rows)),
                group_column,
            )
        id_column = roles.id if roles.id is not None and roles.id in meta.columns else None
        if id_column is not None and len(conflicts):
            contradictions = _c._contradictions(meta, conflicts, features, id_column, label)
        if split_column is not None:
            twins = [c["across"].get(variant) for c in cases]
            twins = [t for t in twins if t is not None and len(t)]
            if twins:
                across = pd.concat(twins).sort_values("row", kind="stable")
                across = across.reset_index(drop=True)
        notes.extend(_c._case_notes(conflicts, contradictions, across, group_column, id_column))

    before: dict[str, int] = {}
    after: dict[str, int] = {}
    by_rule: dict[str, dict[str, int]] = {}
    if label is not None:
        before = _class_counts([pair for s in scans for pair in s["classes"]], roles)
        after = _class_counts([pair for f in finished for pair in f["after"]], roles)
        for i, rule in enumerate(REMOVAL_RULES):
            pairs = [pair for f in finished for pair in f["by_rule"].get(i, [])]
            if pairs:
                by_rule[rule] = _class_counts(pairs, roles)

    result = PartitionedCleaning(
        output_dir=output,
        parts=tuple(names),
        n_input=n,
        n_kept=int(sum(f["kept"] for f in finished)),
        removed=removed,
        counts=counts,
        conflicts=conflicts,
        flags=_c._concat_flags(flag_frames, meta.index),
        dropped_columns=cast("dict[str, str]", dropped),
        plan=plan,
        notes=tuple(notes),
        reason_column=reason_column,
        duplicates=listing,
        contradictions=contradictions,
        across_split=across,
        missing_by_column={str(c): n - notna[c] for c in features},
        class_counts_before=before,
        class_counts_after=after,
        removed_by_class=by_rule,
        where=compute.current().describe(),
    )
    warning = _c._prevalence_warning(result.as_report())
    if warning:
        result = replace(result, notes=(warning, *result.notes))
    if result.n_kept + result.n_removed != n:  # pragma: no cover - the accounting is the point
        raise AssertionError("partitioned cleaning lost rows")
    return result


def _concat_sorted(frames: list[pd.DataFrame], order: list[str]) -> pd.DataFrame:
    """Flags of all partitions, column by column in ``order`` and then by row (as in memory)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return _c._empty_flags(pd.RangeIndex(0))
    flags = pd.concat(frames, ignore_index=True)
    position = flags["column"].map({c: i for i, c in enumerate(order)})
    flags = flags.assign(_position=position).sort_values(["_position", "row"], kind="stable")
    return flags.drop(columns="_position").reset_index(drop=True)
