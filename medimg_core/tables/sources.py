"""Data roots: the only server folders medimg may open tables from.

Tables too large to upload (a million rows of derived features) are read where medimg runs,
from a file or folder on the server. Reading "a path on this server" lets whoever reaches the
dashboard read what the server process can read, so an administrator names the folders that
hold such tables in ``MEDIMG_DATA_ROOTS`` (several separated by ``os.pathsep``: ``:`` on Linux
and macOS, ``;`` on Windows). A requested path is opened only when, with every ``..`` and
symbolic link resolved, it lies inside one of them, and so does every data file a folder holds.
Without any root the option is not offered and the core refuses. A refusal never says whether a
path outside the roots exists, nor what it holds. Uploads stay capped by
:class:`~medimg_core.tables.loading.Limits` whatever is configured here.

The same rules guard image folders (:mod:`medimg_core.imaging.roots`, ``MEDIMG_IMAGE_ROOTS``),
which use :func:`configured_roots` and :func:`inside_roots` from here.

Who may open server tables (analysts and admins) is decided by the caller, which passes the
roots; this module only decides where, and what a path holds (:class:`TableSource`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from medimg_core import compute
from medimg_core.errors import DataError
from medimg_core.tables.cleaning import CleaningPlan, CleaningReport
from medimg_core.tables.partitioned import (
    PartitionedCleaning,
    PartitionedProfile,
    PartitionedTable,
    clean_partitioned,
    open_partitioned,
    profile_partitioned,
    sample_rows,
)
from medimg_core.tables.roles import Roles

__all__ = [
    "CSV_SUFFIXES",
    "DATA_ROOTS_ENV",
    "DEFAULT_SAMPLE_ROWS",
    "PARQUET_SUFFIXES",
    "ServerCleaningReport",
    "SourceSummary",
    "TableSource",
    "class_counts",
    "clean_server_table",
    "cleaned_rows",
    "configured_roots",
    "dask_progress",
    "data_roots",
    "inside_roots",
    "list_table_sources",
    "resolve_table_source",
    "sample_note",
    "summarise_source",
    "with_sample",
]

DATA_ROOTS_ENV = "MEDIMG_DATA_ROOTS"
"""Setting: the folders tables may be read from on the server, separated by ``os.pathsep``."""

CSV_SUFFIXES: frozenset[str] = frozenset({".csv", ".tsv", ".txt"})
"""File endings read as delimited text."""

PARQUET_SUFFIXES: frozenset[str] = frozenset({".parquet", ".pq"})
"""File endings read as Parquet."""

DEFAULT_SAMPLE_ROWS = 50_000
"""Rows of a server table held in the server process: the preview, plots and role proposal."""

_MAX_LISTED = 200
_MAX_CLASSES = 50
_MAX_DEPTH = 4

TableFormat = Literal["csv", "parquet"]


@dataclass(frozen=True)
class TableSource:
    """A table on the server that medimg may read: one file, or a folder of files of one kind.

    Attributes
    ----------
    path : the file or folder, with every ``..`` and link resolved (inside a data root).
    format : ``"csv"`` or ``"parquet"``.
    files : the data files it holds, resolved, sorted by their path (for a file: itself).
    n_bytes : their total size on disk.
    fingerprint : sha256 hex of every file's path, size and modification time: changes when a
        file is replaced, added or removed, so results computed on the old content are not
        reused for the new one. (Hashing the bytes of a table of gigabytes would take longer
        than reading it.)
    """

    path: Path
    format: TableFormat
    files: tuple[Path, ...]
    n_bytes: int
    fingerprint: str

    @property
    def name(self) -> str:
        """The file or folder name, for pages and model cards."""
        return self.path.name

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    def describe(self) -> str:
        """One line: "Parquet folder of 12 files, 231 MB"."""
        kind = "Parquet" if self.format == "parquet" else "CSV"
        size = _size(self.n_bytes)
        if not self.is_folder:
            return f"{kind} file, {size}"
        n = len(self.files)
        return f"{kind} folder of {n:,} file{'' if n == 1 else 's'}, {size}"

    def to_dict(self) -> dict[str, object]:
        """Plain values for cache keys, jobs and model cards."""
        return {
            "path": str(self.path),
            "format": self.format,
            "files": [str(f) for f in self.files],
            "n_bytes": self.n_bytes,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TableSource:
        files = d["files"]
        assert isinstance(files, list)
        return cls(
            path=Path(str(d["path"])),
            format="parquet" if d["format"] == "parquet" else "csv",
            files=tuple(Path(str(f)) for f in files),
            n_bytes=int(str(d["n_bytes"])),
            fingerprint=str(d["fingerprint"]),
        )


@dataclass(frozen=True)
class SourceSummary:
    """What the Data page shows of a server table without loading it: its size, an exact
    column summary computed partition by partition, and a reproducible uniform sample.

    Attributes
    ----------
    source : where the table is.
    table : the table opened lazily (:func:`~medimg_core.tables.partitioned.open_partitioned`):
        column types decided on every row, as an upload of the same file would get them.
    profile : missing values, minimum, maximum and mean of every column over every row
        (:func:`~medimg_core.tables.partitioned.profile_partitioned`).
    sample : ``min(sample_size, n_rows)`` rows drawn uniformly at random without replacement
        from ``seed`` (:func:`~medimg_core.tables.partitioned.sample_rows`), indexed by row
        number; the only rows the server process keeps.
    seed : the seed the sample was drawn with.
    ran_on : where the work ran (``compute.Engine.describe``).
    """

    source: TableSource
    table: PartitionedTable
    profile: PartitionedProfile
    sample: pd.DataFrame
    seed: int
    ran_on: str

    @property
    def n_rows(self) -> int:
        return self.table.n_rows

    @property
    def n_columns(self) -> int:
        return len(self.table.columns)

    @property
    def n_partitions(self) -> int:
        return self.table.n_partitions

    @property
    def sampled(self) -> bool:
        """Whether the sample is smaller than the table."""
        return len(self.sample) < self.n_rows

    def sample_note(self) -> str:
        """The sentence shown next to every table or plot built from the sample."""
        return sample_note(len(self.sample), self.n_rows)

    def exact_profile(self, hidden: Sequence[str] = ()) -> pd.DataFrame:
        """The exact column summary as a table: ``column``, ``missing``, ``missing %``,
        ``min``, ``max``, ``mean``; the values of ``hidden`` (identifying) columns are left
        blank, only their missing counts are shown."""
        out = self.profile.columns[["column", "missing", "missing_share", "min", "max", "mean"]]
        out = out.rename(columns={"missing_share": "missing %"}).copy()
        out["missing %"] = (100.0 * out["missing %"]).round(2)
        secret = out["column"].isin(list(hidden))
        out.loc[secret, ["min", "max", "mean"]] = np.nan
        return out.reset_index(drop=True)


def sample_note(n_sample: int, n_rows: int) -> str:
    """ "Shown: a random sample of 50,000 of 1,000,000 rows." (or every row, when few)."""
    if n_sample >= n_rows:
        return f"Shown: all {n_rows:,} rows."
    return f"Shown: a random sample of {n_sample:,} of {n_rows:,} rows."


def summarise_source(
    source: TableSource, *, sample_size: int = DEFAULT_SAMPLE_ROWS, seed: int = 0
) -> SourceSummary:
    """Open a server table lazily, profile every column and draw a uniform sample, partition
    by partition where heavy work runs (:func:`medimg_core.compute.current`).

    Parameters
    ----------
    source : from :func:`resolve_table_source`.
    sample_size : rows kept in the sample.
    seed : for the sample (the same rows come back whatever the number of workers).

    Returns
    -------
    SourceSummary

    Raises
    ------
    DataError
        The files cannot be read as one table (the message names the problem and the fix).
    """
    table = open_partitioned(str(source.path))
    profile = profile_partitioned(table)
    sample = sample_rows(table, min(int(sample_size), table.n_rows), seed)
    return SourceSummary(
        source=source,
        table=table,
        profile=profile,
        sample=sample,
        seed=seed,
        ran_on=compute.current().describe(),
    )


def class_counts(table: PartitionedTable, column: str) -> dict[str, int]:
    """Rows per value of ``column`` (the label) over the whole table, most frequent first;
    missing values are counted under ``"(missing)"``.

    Raises
    ------
    DataError
        No such column, or more than 50 distinct values (not a diagnosis).
    """
    counted = profile_partitioned(table, label=column).class_counts
    if len(counted) > _MAX_CLASSES:
        raise DataError(
            f"The column {column!r} has more than {_MAX_CLASSES} distinct values, so it is not "
            "a diagnosis. Choose the column holding the diagnosis as the label."
        )
    counts = {str(v): int(k) for v, k in zip(counted["label"], counted["rows"], strict=True)}
    missing = table.n_rows - sum(counts.values())
    if missing:
        counts["(missing)"] = missing
    return counts


@dataclass(frozen=True)
class ServerCleaningReport(CleaningReport):
    """A :class:`~medimg_core.tables.cleaning.CleaningReport` of a whole server table.

    Everything is exact and covers every row (removed rows with their reason, counts, flags,
    class counts before and after), except ``data``: the kept rows of the page's sample only
    (the kept rows of the whole table are never held by the server; training re-derives them
    from the source and the plan, :func:`cleaned_rows`). ``n_kept`` is the exact count.

    Attributes
    ----------
    kept_rows : rows kept from the whole table (``kept_rows + n_removed == n_input``).
    sample_rows : rows of the sample ``data`` was taken from (for the page's note).
    """

    kept_rows: int = 0
    sample_rows: int = 0

    @property
    def n_kept(self) -> int:
        return self.kept_rows


def clean_server_table(
    table: PartitionedTable,
    roles: Roles,
    plan: CleaningPlan,
    *,
    progress: Callable[[float, str], None] | None = None,
) -> ServerCleaningReport:
    """Clean a whole server table (:func:`~medimg_core.tables.partitioned.clean_partitioned`)
    for its account: kept and removed counts, reasons, class counts. The kept rows are written
    to a temporary folder outside the workspace and deleted before this returns: nothing of
    the table is kept (the cleaned table is "source + plan", re-derived where needed).

    Parameters
    ----------
    table, roles, plan : as for ``clean_partitioned``.
    progress : ``progress(fraction, message)`` as partitions finish; it may raise
        :class:`~medimg_core.errors.Cancelled` to stop (nothing is left behind).

    Returns
    -------
    ServerCleaningReport
        With no kept rows in ``data`` (see :func:`with_sample`).
    """
    folder = Path(tempfile.mkdtemp(prefix="medimg-clean-"))
    try:
        with dask_progress(progress, "Cleaning"):
            outcome = clean_partitioned(table, roles, plan, folder / "kept")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _server_report(outcome, pd.DataFrame())


def cleaned_rows(
    table: PartitionedTable,
    roles: Roles,
    plan: CleaningPlan,
    *,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[pd.DataFrame, ServerCleaningReport]:
    """The kept rows of a whole server table, in memory (on a worker: for training), with the
    account of the cleaning; the temporary Parquet parts are deleted before this returns.

    Returns
    -------
    (pandas.DataFrame, ServerCleaningReport)
        The kept rows, in input order, indexed by row number (as ``clean`` keeps them from the
        same table in memory), and the report (whose ``data`` is left empty).
    """
    folder = Path(tempfile.mkdtemp(prefix="medimg-clean-"))
    try:
        with dask_progress(progress, "Cleaning"):
            outcome = clean_partitioned(table, roles, plan, folder / "kept")
        parts = [pd.read_parquet(outcome.output_dir / name) for name in outcome.parts]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    data = pd.concat(parts, ignore_index=True) if parts else table.meta
    # Kept rows are the input rows that were not removed, in input order.
    data.index = pd.Index(
        np.setdiff1d(np.arange(outcome.n_input), outcome.removed.index.to_numpy(dtype=np.int64))
    )
    if len(data) != outcome.n_kept:  # pragma: no cover - the accounting is the point
        raise AssertionError("the kept rows read back differ from the cleaning's account")
    return data, _server_report(outcome, pd.DataFrame())


def with_sample(report: ServerCleaningReport, sample: pd.DataFrame) -> ServerCleaningReport:
    """``report`` with ``data`` = the sample's rows that the cleaning kept (without dropped
    columns), for previews."""
    kept = sample.loc[~sample.index.isin(report.removed.index)]
    kept = kept.drop(columns=[c for c in report.dropped_columns if c in kept.columns])
    return replace(report, data=kept, sample_rows=len(sample))


def _server_report(outcome: PartitionedCleaning, data: pd.DataFrame) -> ServerCleaningReport:
    base = outcome.as_report(data)
    fields = {f.name: getattr(base, f.name) for f in dataclass_fields(base)}
    return ServerCleaningReport(**fields, kept_rows=outcome.n_kept)


@contextlib.contextmanager
def dask_progress(progress: Callable[[float, str], None] | None, what: str) -> Iterator[None]:
    """Report the tasks of every Dask computation run in this thread (with Dask's threaded
    scheduler, as inside a job) to ``progress``; an exception it raises (a cancel) stops the
    computation.

    Several computations may run one after the other (cleaning makes several passes): pass k
    moves the fraction from ``1 - 0.6**k`` towards ``1 - 0.6**(k+1)``, so it only ever grows.
    """
    if progress is None:
        yield
        return
    from dask.callbacks import Callback

    owner = threading.get_ident()
    passes = [0]
    totals = [1]
    done = [0]

    def start_state(dsk: Any, state: Any) -> None:
        if threading.get_ident() != owner:
            return
        passes[0] += 1
        totals[0] = max(1, len(dsk))
        done[0] = 0

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if threading.get_ident() != owner:
            return
        done[0] += 1
        k = passes[0] - 1
        low, high = 1 - 0.6**k, 1 - 0.6 ** (k + 1)
        fraction = low + (high - low) * min(1.0, done[0] / totals[0])
        progress(fraction, f"{what}: pass {passes[0]}, {done[0]:,} of {totals[0]:,} tasks")

    with Callback(start_state=start_state, posttask=posttask):
        yield


def configured_roots(env: str) -> tuple[Path, ...]:
    """The folders an administrator named in the setting ``env``.

    Parameters
    ----------
    env : the environment variable (``MEDIMG_DATA_ROOTS``, ``MEDIMG_IMAGE_ROOTS``).

    Returns
    -------
    tuple of pathlib.Path
        The existing folders named, resolved (links followed), in the order given, without
        duplicates; empty when nothing usable is configured (a root that does not exist is
        ignored rather than trusted later, when it might be created by someone else).
    """
    raw = os.environ.get(env, "")
    roots: list[Path] = []
    for part in raw.split(os.pathsep):
        text = part.strip()
        if not text:
            continue
        try:
            root = Path(text).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if root.is_dir() and root not in roots:
            roots.append(root)
    return tuple(roots)


def data_roots() -> tuple[Path, ...]:
    """The data roots configured by the administrator (``MEDIMG_DATA_ROOTS``); see
    :func:`configured_roots`."""
    return configured_roots(DATA_ROOTS_ENV)


def inside_roots(path: Path, roots: Sequence[Path]) -> bool:
    """Whether a resolved ``path`` is one of ``roots`` or lies inside one of them."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_table_source(path: str | os.PathLike[str], roots: Sequence[Path]) -> TableSource:
    """The table at a requested server path, when it lies inside a data root.

    Parameters
    ----------
    path : a CSV or Parquet file, or a folder of CSV files or of Parquet parts (the files
        directly in it, in name order, one table); absolute, or relative to a data root (tried
        in order).
    roots : the allowed roots, normally :func:`data_roots` (resolved).

    Returns
    -------
    TableSource

    Raises
    ------
    DataError
        No root is configured; or the path does not exist, lies outside every root (after
        resolving ``..`` and links), or is not a table medimg reads: the message is the same
        in all of these cases, so it reveals nothing about paths outside the roots. A folder
        inside a root that holds no table, mixes CSV and Parquet, or holds links leading out
        of the roots gets a message of its own.
    """
    if not roots:
        raise DataError(
            "Reading tables on this server is switched off: no data folder is configured. An "
            f"administrator can allow it by setting {DATA_ROOTS_ENV} to the folders that hold "
            "large tables; until then, upload the table."
        )
    allowed = [Path(r).resolve() for r in roots]
    text = os.fspath(path).strip()
    found = _locate(text, allowed)
    if found is None:
        shown = ", ".join(str(r) for r in allowed)
        raise DataError(
            f"'{text}' is not a table medimg may read. Give a CSV or Parquet file, or a folder "
            f"of them, inside the data folders configured for this server ({shown}), as a full "
            "path or relative to one of them."
        )
    if any(ch in str(found) for ch in "*?["):
        raise DataError(
            f"'{text}' has *, ? or [ in its name, which medimg would read as a pattern. Ask an "
            "administrator to rename it."
        )
    if found.is_file():
        fmt = _format_of(found)
        assert fmt is not None
        return _source(found, fmt, (found,))
    files, escaping = _data_files(found, allowed)
    if escaping:
        raise DataError(
            f"The folder '{text}' holds {escaping:,} link{'' if escaping == 1 else 's'} to "
            "files outside the data folders medimg may read, so it is not read. Ask an "
            "administrator to copy those files into the folder instead of linking them."
        )
    kinds = {fmt for fmt, _ in files}
    if not kinds:
        raise DataError(
            f"The folder '{text}' holds no table: medimg reads CSV files "
            f"({', '.join(sorted(CSV_SUFFIXES))}) or Parquet files "
            f"({', '.join(sorted(PARQUET_SUFFIXES))}). Choose a folder that holds them."
        )
    if len(kinds) > 1:
        raise DataError(
            f"The folder '{text}' mixes CSV and Parquet files; medimg reads a folder of one "
            "kind as one table. Choose a folder holding one kind only, or one file."
        )
    fmt = kinds.pop()
    return _source(found, fmt, tuple(sorted(f for _, f in files)))


def list_table_sources(roots: Sequence[Path], *, limit: int = _MAX_LISTED) -> list[TableSource]:
    """Tables found in the data roots, for a picker: every CSV or Parquet file, and every
    folder whose data files are all of one kind (a partitioned table).

    Parameters
    ----------
    roots : the allowed roots, normally :func:`data_roots`.
    limit : at most this many (the walk stops there; the page also takes a typed path).

    Returns
    -------
    list of TableSource
        Folders first within each root, in path order. Links are not followed while
        listing; anything that cannot be read is left out.
    """
    allowed = [Path(r).resolve() for r in roots]
    found: list[TableSource] = []
    for root in allowed:
        for folder, subdirs, names in os.walk(root, followlinks=False):
            here = Path(folder)
            depth = len(here.relative_to(root).parts)
            subdirs[:] = sorted(d for d in subdirs if not _hidden(d) and depth < _MAX_DEPTH)
            tables = [n for n in sorted(names) if not _hidden(n) and _format_of(here / n)]
            if tables and here != root:
                with contextlib.suppress(DataError):
                    found.append(resolve_table_source(here, allowed))
            for name in tables:
                if len(found) >= limit:
                    return found
                try:
                    found.append(resolve_table_source(here / name, allowed))
                except DataError:
                    continue
            if len(found) >= limit:
                return found
    return found


def _locate(text: str, allowed: Sequence[Path]) -> Path | None:
    if not text:
        return None
    requested = Path(text).expanduser()
    candidates = [requested] if requested.is_absolute() else [r / requested for r in allowed]
    for candidate in candidates:
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if not inside_roots(resolved, allowed):
            continue
        if resolved.is_dir() or (resolved.is_file() and _format_of(resolved) is not None):
            return resolved
    return None


def _data_files(
    folder: Path, allowed: Sequence[Path]
) -> tuple[list[tuple[TableFormat, Path]], int]:
    """The data files directly in ``folder`` (resolved; sub-folders are not read, as
    :func:`~medimg_core.tables.partitioned.open_partitioned` reads them) and the number of
    them that are links leading outside the roots."""
    files: list[tuple[TableFormat, Path]] = []
    escaping = 0
    for entry in sorted(folder.iterdir()):
        fmt = _format_of(entry)
        if _hidden(entry.name) or fmt is None:
            continue
        try:
            resolved = entry.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if not inside_roots(resolved, allowed):
            escaping += 1
        elif resolved.is_file():
            files.append((fmt, resolved))
    return files, escaping


def _hidden(name: str) -> bool:
    # Parquet writers put their own bookkeeping in "_metadata", "_SUCCESS", ".crc" files.
    return name.startswith((".", "_"))


def _format_of(path: Path) -> TableFormat | None:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    return None


def _source(path: Path, fmt: TableFormat, files: tuple[Path, ...]) -> TableSource:
    digest = hashlib.sha256()
    total = 0
    for f in files:
        stat = f.stat()
        total += stat.st_size
        digest.update(f"{f}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return TableSource(
        path=path, format=fmt, files=files, n_bytes=total, fingerprint=digest.hexdigest()
    )


def _size(n_bytes: int) -> str:
    if n_bytes >= 2**30:
        return f"{n_bytes / 2**30:.1f} GB"
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.0f} MB"
    return f"{max(1, round(n_bytes / 2**10))} kB"
