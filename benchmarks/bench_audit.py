"""Time the audit trail on SQLite: appends per second, and ``verify`` over a long trail.

Appends are timed through :meth:`AuditTrail.append` itself: one transaction per entry
(``BEGIN IMMEDIATE``, read the last hash, insert, commit), by one writer and then by several
threads at once, each with its own connection. The long trail for ``verify`` (100,000 entries
by default) is then filled in bulk, chained with the module's own hash function in one
transaction, because filling it one committed append at a time measures the disk, not
``verify``; ``verify`` reads it back through the real code, streaming.

Run: ``python benchmarks/bench_audit.py [--appends N] [--entries N] [--threads K]``.
Prints figures; asserts nothing beyond the trail verifying.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from medimg_core.store.audit import (
    COLUMNS,
    GENESIS_HASH,
    AuditEntry,
    AuditTrail,
    _audit,
    entry_hash,
)
from medimg_core.store.registry import Registry

RUN_ID = "20260301-101500-123456-0f1e2d"


def _append_rate(url: str, home: Path, n: int, threads: int) -> float:
    registries = [Registry(url=url, home=home) for _ in range(threads)]
    trails = [AuditTrail(r) for r in registries]
    start = threading.Barrier(threads + 1)

    def write(trail: AuditTrail, k: int) -> None:
        start.wait()
        for _ in range(n // threads):
            trail.append(user=f"user{k}", action="open run", object=RUN_ID, client="10.0.0.1")

    workers = [threading.Thread(target=write, args=(t, k)) for k, t in enumerate(trails)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    for r in registries:
        r.close()
    return (n // threads) * threads / elapsed


def _bulk_fill(trail: AuditTrail, n: int) -> None:
    """Chain ``n`` entries after the current last one, inserted in batches in one transaction."""
    frame = trail.entries()
    seq = len(frame)
    prev = frame["hash"].iloc[-1] if seq else GENESIS_HASH
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, object]] = []
    with trail._engine.begin() as conn:
        for i in range(n):
            seq += 1
            unsigned = AuditEntry(
                seq=seq,
                time=t0 + timedelta(seconds=i),
                user=f"user{i % 7}",
                role="analyst",
                project="breast",
                action="open run",
                object=RUN_ID,
                outcome="ok",
                client="10.0.0.1",
                prev_hash=prev,
                hash="",
            )
            digest = entry_hash(unsigned.hashed_fields())
            row = {name: getattr(unsigned, name) for name in COLUMNS}
            row["hash"] = digest
            row["time"] = unsigned.time.replace(tzinfo=None)
            rows.append(row)
            prev = digest
            if len(rows) == 10_000:
                conn.execute(insert(_audit), rows)
                rows = []
        if rows:
            conn.execute(insert(_audit), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home}/registry.db"
        one = _append_rate(url, home, args.appends, 1)
        many = _append_rate(url, home, args.appends, args.threads)
        print(f"append, 1 writer:           {one:8.0f} entries/s ({args.appends} entries)")
        print(f"append, {args.threads} threads at once: {many:8.0f} entries/s")
        with Registry(url=url, home=home) as registry:
            trail = AuditTrail(registry)
            _bulk_fill(trail, args.entries - 2 * args.appends)
            began = time.perf_counter()
            result = trail.verify()
            elapsed = time.perf_counter() - began
        assert result.ok, result.message
        size = (home / "registry.db").stat().st_size / 1e6
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"verify:                     {elapsed:8.2f} s for {result.n_entries} entries "
            f"({result.n_entries / elapsed:.0f} entries/s; database {size:.1f} MB; "
            f"peak RSS of the process {peak:.0f} MB)"
        )


if __name__ == "__main__":
    main()
