"""Encryption at rest: what AES-256-GCM adds to saving and loading a data set and a model (issue 9).

A 100,000-row table (20 numeric features, a categorical one, an ID and a label) is written and read
as Parquet the way the registry did before encryption (straight to a file) and the way it does now
(Parquet bytes in memory, encrypted, written atomically; read, decrypted, parsed). The same for a
k-nearest-neighbours model fitted on those rows (it keeps every training row, so it is the largest
model file medimg writes) and a logistic regression: skops bytes written in clear, against the same
bytes encrypted. Both sides write a temporary file, fsync it and rename it, as medimg does. Each figure is the median of several repeats.

Run: ``python benchmarks/bench_encryption.py [--rows N] [--repeats R]``. Prints figures; asserts
nothing. Uses a throw-away key file and workspace in a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medimg_core.encryption import read_decrypted, write_encrypted


def table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 20)), columns=[f"f{i}" for i in range(20)])
    frame["site"] = rng.choice(["left", "right", "central"], rows)
    frame["patient_id"] = [f"P{i:07d}" for i in range(rows)]
    frame["label"] = rng.integers(0, 2, rows)
    return frame


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def write_plain(path: Path, data: bytes) -> None:
    """What medimg did before encryption: temporary file, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def line(what: str, plain: float, encrypted: float, size: int) -> None:
    extra = encrypted - plain
    print(
        f"  {what:<28} plain {plain * 1000:8.1f} ms   encrypted {encrypted * 1000:8.1f} ms   "
        f"(+{extra * 1000:.1f} ms, {size / 1e6:.1f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["MEDIMG_HOME"] = str(folder / "ws")
        os.environ["MEDIMG_KEY_FILE"] = str(folder / "key")
        os.environ.pop("MEDIMG_ENCRYPTION_KEY", None)
        (folder / "ws").mkdir()
        frame = table(args.rows)
        print(f"Data set: {args.rows:,} rows × {frame.shape[1]} columns")
        plain_path, enc_path = folder / "ws" / "plain.parquet", folder / "ws" / "enc.parquet"
        save_plain = median_seconds(
            lambda: write_plain(plain_path, parquet_bytes(frame)), args.repeats
        )
        save_enc = median_seconds(
            lambda: write_encrypted(enc_path, parquet_bytes(frame)), args.repeats
        )
        line("save (to Parquet)", save_plain, save_enc, enc_path.stat().st_size)
        load_plain = median_seconds(lambda: pd.read_parquet(plain_path), args.repeats)
        load_enc = median_seconds(
            lambda: pd.read_parquet(io.BytesIO(read_decrypted(enc_path))), args.repeats
        )
        line("load (from Parquet)", load_plain, load_enc, enc_path.stat().st_size)

        X, y = frame[[f"f{i}" for i in range(20)]].to_numpy(), frame["label"].to_numpy()
        models = {
            "k-NN (keeps all rows)": make_pipeline(StandardScaler(), KNeighborsClassifier()),
            "logistic regression": make_pipeline(StandardScaler(), LogisticRegression()),
        }
        plain_file, enc_file = folder / "ws" / "plain.skops", folder / "ws" / "enc.skops"
        for name, model in models.items():
            model.fit(X, y)
            print(f"Model: {name}")
            save_plain = median_seconds(
                lambda m=model: write_plain(plain_file, sio.dumps(m)), args.repeats
            )
            save_enc = median_seconds(
                lambda m=model: write_encrypted(enc_file, sio.dumps(m)), args.repeats
            )
            line("save", save_plain, save_enc, enc_file.stat().st_size)
            trusted = sio.get_untrusted_types(file=plain_file)
            load_plain = median_seconds(
                lambda t=trusted: sio.load(plain_file, trusted=t), args.repeats
            )
            load_enc = median_seconds(
                lambda t=trusted: sio.loads(read_decrypted(enc_file), trusted=t), args.repeats
            )
            line("load", load_plain, load_enc, enc_file.stat().st_size)

        blob = os.urandom(100_000_000)
        cipher = median_seconds(lambda: write_encrypted(folder / "ws" / "raw", blob), 3)
        print(f"AES-256-GCM write of 100 MB (encrypt + fsync): {cipher:.2f} s")


if __name__ == "__main__":
    main()
