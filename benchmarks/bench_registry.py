"""The run registry on SQLite and on PostgreSQL: record, list and get with 1,000 runs (issue 9).

One logistic regression is trained on the built-in sample and its card recorded 1,000 times
(each ``record_run`` also hashes the training table and finds it already stored, as a real
run would). Then: opening the registry (what every page of the dashboard does), listing all
runs (the Runs page), and ``get_run`` for every run. PostgreSQL is measured when
``MEDIMG_TEST_POSTGRES_URL`` names a server (``.ci/run`` starts one): a new database is made for
the measurement and dropped after.

Run: ``python benchmarks/bench_registry.py [--runs N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from _common import load_line
from sqlalchemy.engine import make_url

from medimg_core.access import SINGLE_USER
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import train
from medimg_core.store.persistence import CARD_NAME, save_model
from medimg_core.store.registry import Registry
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import Roles


def measure(label: str, url: str, home: Path, model_dir: Path, n: int, result, data) -> None:  # type: ignore[no-untyped-def]
    card = json.loads((model_dir / CARD_NAME).read_text(encoding="utf-8"))
    with Registry(url=url, home=home) as registry:
        start = time.perf_counter()
        ids = [
            registry.record_run(SINGLE_USER, result, data=data, card=card, model_dir=model_dir)
            for _ in range(n)
        ]
        recorded = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10):
        Registry(url=url, home=home).close()
    opened = (time.perf_counter() - start) / 10
    with Registry(url=url, home=home) as registry:
        start = time.perf_counter()
        runs = registry.list_runs(SINGLE_USER)
        listed = time.perf_counter() - start
        assert len(runs) == n
        start = time.perf_counter()
        for run_id in ids:
            registry.get_run(SINGLE_USER, run_id)
        got = time.perf_counter() - start
    print(
        f"{label:<10} record {n}: {recorded:6.2f} s ({1000 * recorded / n:5.1f} ms/run)   "
        f"open: {1000 * opened:5.1f} ms   list {n}: {1000 * listed:6.0f} ms   "
        f"get x{n}: {got:5.2f} s ({1000 * got / n:4.1f} ms/run)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    print(load_line())
    sample = load_sample()
    data = sample.frame
    result = train(data, Roles(label="diagnosis", id="case_id"), config=ModelConfig(model="logreg"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = save_model(result, root / "model", dataset_name="wdbc sample")
        measure(
            "SQLite",
            f"sqlite:///{root}/registry.db",
            root / "ws-sqlite",
            model_dir,
            args.runs,
            result,
            data,
        )
        server = os.environ.get("MEDIMG_TEST_POSTGRES_URL")
        if not server:
            print("PostgreSQL: not measured (set MEDIMG_TEST_POSTGRES_URL; .ci/run does)")
            return
        parsed = make_url(server)
        name = f"medimg_t_bench_{uuid.uuid4().hex[:8]}"
        conninfo = dict(
            host=parsed.host,
            port=parsed.port,
            user=parsed.username,
            password=parsed.password,
            dbname=parsed.database,
            autocommit=True,
        )
        with psycopg.connect(**conninfo) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = parsed.set(database=name).render_as_string(hide_password=False)
            measure("PostgreSQL", url, root / "ws-pg", model_dir, args.runs, result, data)
        finally:
            with psycopg.connect(**conninfo) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
