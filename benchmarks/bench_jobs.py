"""Four browser sessions training ``auto`` at once on a 20,000-row table (issue 10, "Jobs, not
page runs").

One dashboard server (its own workspace and key) and four headless Chromium contexts, i.e. four
independent sessions. Each uploads the same synthetic 20,000-row × 30-feature CSV through the
Data page's uploader, confirms the proposed roles, opens Clean and Train and, once all four are
ready, clicks Train with ``auto`` (the page's default) within a few seconds of each other. Then,
until all four runs are recorded (the registry the Runs page lists):

1. page-switch latency: every few seconds one session (in turn) switches to Runs or Jobs, timed
   in the page from the click to the page's title and figures drawn and its script run finished
   (target ≤ 2 s while the jobs run);
2. the time from the first click to each run, and to all four, being recorded;
3. the server's memory (RSS, sampled every 0.5 s): the server process alone and with its child
   processes (the job cluster's workers), at baseline (four sessions open, nothing loaded),
   peak, and 60 s after the last run was recorded.

Run: ``python benchmarks/bench_jobs.py [--rows N] [--sessions N]``. Needs ``/usr/bin/chromium``
(or ``MEDIMG_CHROMIUM``). Prints figures; asserts nothing. The machine's load average is
printed too: on a shared 2-core machine it moves every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bench_app
import numpy as np
import pandas as pd
import psutil
from bench_app import CHROMIUM, CHROMIUM_ARGS, LONG_MS, WATCH, act, free_port, idle, open_page
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sklearn.datasets import make_classification

ROOT = Path(__file__).resolve().parents[1]
SWITCH_EVERY = 5.0
"""Seconds between two timed page switches while the jobs run."""
GIVE_UP = 45 * 60.0
"""Seconds after which the benchmark stops waiting for the four runs (and says so)."""
SWITCH_TIMEOUT_MS = 120_000
"""A page switch not drawn within this is printed as unanswered, and the next one is tried."""


def switch(page: Page, title: str) -> float | None:
    """Seconds to switch ``page`` to ``title``, or None when it did not answer in time."""
    bench_app.LONG_MS = SWITCH_TIMEOUT_MS  # act() and idle() wait this long at most
    try:
        return open_page(page, title) / 1000
    except PlaywrightTimeout:
        return None
    finally:
        bench_app.LONG_MS = LONG_MS


def synthetic_table(path: Path, rows: int) -> Path:
    """``rows`` cases, 30 numeric features (12 informative), a case ID and a diagnosis."""
    x, y = make_classification(
        n_samples=rows, n_features=30, n_informative=12, class_sep=1.0, random_state=0
    )
    frame = pd.DataFrame(x.round(5), columns=[f"feature_{i:02d}" for i in range(30)])
    frame.insert(0, "case_id", [f"C{i:06d}" for i in range(len(frame))])
    frame["diagnosis"] = np.where(y == 1, "malignant", "benign")
    frame.to_csv(path, index=False)
    return path


@contextmanager
def medimg_server(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], dict[str, str]]]:
    """The dashboard on a free port with its own workspace and key; yields URL, process, env."""
    port = free_port()
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "MEDIMG_HOME": str(home),
        "MEDIMG_KEY_FILE": str(home.parent / "server-key"),
    }
    for name in ("MEDIMG_DATABASE_URL", "MEDIMG_ENCRYPTION_KEY", "MEDIMG_USER", "MEDIMG_RAISE"):
        env.pop(name, None)
    log = (home.parent / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")),
            *("--server.port", str(port), "--server.address", "127.0.0.1"),
            *("--server.headless", "true"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    while True:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)


class Memory:
    """Samples the RSS of a process and of it with its children, every 0.5 s, in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, float]] = []  # (time, server MB, total MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> tuple[float, float]:
        own = self.process.memory_info().rss
        total = own
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return own / 2**20, total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                own, total = self.now()
            except psutil.Error:
                return
            self.samples.append((time.perf_counter(), own, total))
            self._stop.wait(0.5)

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> tuple[float, float]:
        return max(s[1] for s in self.samples), max(s[2] for s in self.samples)


def prepare(page: Page, url: str, csv: Path) -> None:
    """Upload ``csv``, confirm the proposed roles, open Clean and Train (``auto`` chosen)."""
    page.goto(url)
    page.wait_for_selector(".st-key-upload [data-testid=stFileUploaderDropzone]", timeout=LONG_MS)
    idle(page)
    page.evaluate(WATCH)
    runs = page.evaluate("() => window.__bench.runs")
    page.locator(".st-key-upload input[type=file]").set_input_files(str(csv))
    page.wait_for_function(f"() => window.__bench.runs > {runs}", timeout=LONG_MS)
    page.wait_for_selector(".st-key-confirm_roles button:not([disabled])", timeout=LONG_MS)
    idle(page)
    act(page, ".st-key-confirm_roles button", "true")
    open_page(page, "Clean")
    open_page(page, "Train")
    chosen = page.locator(".st-key-train_model input[role=combobox]").input_value()
    if not chosen.lower().startswith("auto"):
        raise SystemExit(f"the Train page did not start on auto but on {chosen!r}")


def recorded_runs(home: Path) -> int:
    """Runs in the server's registry (what its Runs page lists for the single local user)."""
    from medimg_core.access import SINGLE_USER
    from medimg_core.errors import MedimgError
    from medimg_core.store.registry import Registry

    if not (home / "registry.db").is_file():
        return 0
    try:
        with Registry(home=home) as registry:
            return len(registry.list_runs(SINGLE_USER))
    except MedimgError:
        return 0


def _secs(seconds: float | None) -> str:
    return "no answer" if seconds is None else f"{seconds:.2f} s"


def summary(name: str, values: list[float], unit: str) -> str:
    if not values:
        return f"{name}: none"
    return (
        f"{name}: n={len(values)}, median {statistics.median(values):.2f} {unit}, "
        f"max {max(values):.2f} {unit}, min {min(values):.2f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the synthetic table")
    parser.add_argument("--sessions", type=int, default=4, help="browser sessions training")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium not found at {CHROMIUM}; set MEDIMG_CHROMIUM")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with (
        tempfile.TemporaryDirectory(prefix="medimg-bench-jobs-") as tmp,
        sync_playwright() as p,
    ):
        root = Path(tmp)
        csv = synthetic_table(root / "cases-20k.csv", args.rows)
        print(f"table: {args.rows:,} rows × 30 features, {csv.stat().st_size / 2**20:.1f} MB CSV")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        with medimg_server(root / "workspace") as (url, proc, env):
            wait_healthy(url, proc)
            pages = []
            for _ in range(args.sessions):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector(".st-key-upload [data-testid=stFileUploaderDropzone]")
                idle(page)
                pages.append(page)
            with Memory(proc.pid) as memory:
                time.sleep(2)
                baseline = memory.now()
                print(
                    f"  baseline RSS, MB (server / with its job workers): {baseline[0]:.0f} / "
                    f"{baseline[1]:.0f}"
                )
                for i, page in enumerate(pages, start=1):
                    t = time.perf_counter()
                    prepare(page, url, csv)
                    print(
                        f"  session {i}: table loaded, cleaned, Train open in "
                        f"{time.perf_counter() - t:.1f} s"
                    )
                started = time.perf_counter()
                for i, page in enumerate(pages, start=1):
                    ms = act(page, ".st-key-train_go button", "true")
                    print(f"  session {i}: Train clicked, page answered in {ms / 1000:.2f} s")
                switches: list[float] = []
                unanswered = 0
                arrivals: list[float] = []
                turn = 0
                while len(arrivals) < args.sessions:
                    elapsed = time.perf_counter() - started
                    if elapsed > GIVE_UP:
                        print(f"  gave up after {GIVE_UP / 60:.0f} min: {len(arrivals)} run(s)")
                        break
                    page = pages[turn % len(pages)]
                    title = "Runs" if turn % 2 == 0 else "Jobs"
                    seconds = switch(page, title)
                    if seconds is None:
                        unanswered += 1
                    else:
                        switches.append(seconds)
                    turn += 1
                    n = recorded_runs(Path(env["MEDIMG_HOME"]))
                    while len(arrivals) < min(n, args.sessions):
                        arrivals.append(time.perf_counter() - started)
                        print(
                            f"  run {len(arrivals)} recorded after {arrivals[-1]:.0f} s", flush=True
                        )
                    print(
                        f"  t={elapsed:5.0f} s: session {turn % len(pages) or len(pages)} → "
                        f"{title} in {_secs(seconds)}; {n} run(s) recorded; RSS "
                        f"{memory.now()[0]:.0f} / {memory.now()[1]:.0f} MB; load "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    time.sleep(SWITCH_EVERY)
                finished = time.perf_counter()
                time.sleep(60)
                after = memory.now()
            peak = memory.peak()
            while_running = [s for s in memory.samples if started <= s[0] <= finished]
        browser.close()
    print()
    print(summary("page switch while the jobs ran (s)", switches, "s"))
    within = sum(1 for s in switches if s <= 2.0)
    print(
        f"page switches within 2 s: {within} of {len(switches) + unanswered} "
        f"({unanswered} not drawn within {SWITCH_TIMEOUT_MS / 1000:.0f} s)"
    )
    if arrivals:
        if len(arrivals) == args.sessions:
            print(f"all {args.sessions} runs recorded after {arrivals[-1]:.0f} s")
        else:
            print(f"only {len(arrivals)} of {args.sessions} runs recorded")
        print("each run recorded after (s): " + ", ".join(f"{a:.0f}" for a in arrivals))
    print(
        f"server RSS, MB (server alone / with its job workers): baseline "
        f"{baseline[0]:.0f} / {baseline[1]:.0f}, peak {peak[0]:.0f} / {peak[1]:.0f}, "
        f"60 s after the last run {after[0]:.0f} / {after[1]:.0f}"
    )
    if while_running:
        print(
            f"  peak while the jobs ran: {max(s[1] for s in while_running):.0f} / "
            f"{max(s[2] for s in while_running):.0f}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
