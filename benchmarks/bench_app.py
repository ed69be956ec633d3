"""Dashboard speed, measured in headless Chromium with Playwright (issue 3, "Speed").

Four figures, each printed next to its target:

1. server start to the first page interactive (process start → the Data page's uploader and
   sample button drawn and the script finished), target ≤ 5 s;
2. switching to a page whose results are cached (sample loaded; Data → Clean → Data, the second
   visit of each timed), target ≤ 1 s;
3. moving the threshold slider on a 10,000-row dataset (logistic regression) until the
   confusion matrix shows the new threshold, target ≤ 300 ms;
4. ``auto`` training on the built-in sample, from clicking Train to the leaderboard drawn,
   target ≤ 30 s.

Times 2-4 are taken inside the page (``performance.now()`` at the click or key press, and when a
MutationObserver / animation-frame poll sees the result), so Playwright's round trips are not
counted. The machine's load average is printed too: on a shared 2-core machine it moves every
figure.

Run: ``python benchmarks/bench_app.py [--starts N] [--moves N]``. Needs ``/usr/bin/chromium``
(or ``MEDIMG_CHROMIUM``). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from playwright.sync_api import Page, sync_playwright
from sklearn.datasets import make_classification

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MEDIMG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
LONG_MS = 900_000

# Counts the app's script runs as they start and finish, so a wait can ask "has a run finished
# since the action?" without missing a short run between two polls. Finishes are counted rather
# than starts: an action taken while a run is still going merges into it without a new start.
WATCH = """() => {
  if (window.__bench === undefined) {
    window.__bench = {runs: 0, done: 0, lastDone: 0};
    new MutationObserver((records) => {
      for (const r of records) {
        const s = r.target.getAttribute('data-test-script-state');
        if (s === 'running') window.__bench.runs++;
        if (s === 'notRunning') { window.__bench.done++; window.__bench.lastDone = performance.now(); }
      }
    }).observe(document, {subtree: true, attributes: true,
                          attributeFilter: ['data-test-script-state']});
  }
  return window.__bench.runs;
}"""

IDLE = (
    "() => { const a = document.querySelector('[data-testid=stApp]');"
    " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }"
)

PLOTS_DRAWN = (
    "[...document.querySelectorAll('[data-testid=stMain] [data-testid=stPlotlyChart]')]"
    ".every(c => c.querySelector('.main-svg'))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def medimg_server(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """Start the dashboard; yield its URL, the process and the start time (perf_counter)."""
    port = free_port()
    env = {**os.environ, "MEDIMG_HOME": str(home)}
    env.pop("MEDIMG_DATABASE_URL", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc, started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.02)


def idle(page: Page) -> None:
    page.wait_for_function(IDLE, timeout=LONG_MS)


def act(
    page: Page, selector: str, done: str, *, key: str | None = None, finished: bool = True
) -> float:
    """Click ``selector`` (or press ``key`` on it) and return the milliseconds, measured in the
    page, until the JavaScript condition ``done`` holds and (with ``finished``) the run the
    action started has finished."""
    page.evaluate(WATCH)
    idle(page)
    if key is None:
        t0 = page.evaluate(
            "(sel) => { window.__benchDone0 = window.__bench.done; const t = performance.now();"
            " document.querySelector(sel).click(); window.__benchT0 = t; return t; }",
            selector,
        )
    else:
        page.evaluate(
            "() => { window.__benchDone0 = window.__bench.done;"
            " document.addEventListener('keydown', () => { window.__benchT0 = performance.now(); },"
            " {capture: true, once: true}); }"
        )
        page.locator(selector).press(key)
        t0 = page.evaluate("() => window.__benchT0")
    t1 = page.wait_for_function(
        "([done, finished]) => { const b = window.__bench; const a = document.querySelector("
        "'[data-testid=stApp]'); const over = !finished || (b.done > window.__benchDone0 &&"
        " a.getAttribute('data-test-script-state') === 'notRunning');"
        " if (over && eval(done)) return performance.now(); return false; }",
        arg=[done, finished],
        polling="raf",
        timeout=LONG_MS,
    ).json_value()
    return float(t1) - float(t0)


def open_page(page: Page, title: str, done: str = "true") -> float:
    """Switch to a step through its sidebar link; milliseconds until it is drawn."""
    link = page.locator("[data-testid=stSidebarNav] a").filter(
        has=page.get_by_text(title, exact=True)
    )
    link.first.evaluate("(a) => a.setAttribute('data-bench-target', '1')")
    try:
        return act(
            page,
            "[data-bench-target='1']",
            f"[...document.querySelectorAll('h1')].some(h => h.textContent === '{title}')"
            f" && {PLOTS_DRAWN} && ({done})",
        )
    finally:
        link.first.evaluate("(a) => a.removeAttribute('data-bench-target')")


def bench_start(browser: Any, home: Path, n: int) -> list[float]:
    """Seconds from launching the server process to the Data page being usable."""
    times = []
    for i in range(n):
        with medimg_server(home / f"start-{i}") as (url, proc, started):
            wait_healthy(url, proc)
            healthy = time.perf_counter() - started
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector(".st-key-upload [data-testid=stFileUploaderDropzone]")
            page.wait_for_selector(".st-key-use_sample button")
            idle(page)
            total = time.perf_counter() - started
            times.append(total)
            print(
                f"  start {i + 1}: healthy after {healthy:.2f} s, interactive after {total:.2f} s"
            )
            context.close()
    return times


def bench_switch(page: Page, url: str, n: int) -> tuple[list[float], list[float]]:
    """Milliseconds to switch to Clean and to Data once both have been computed."""
    page.goto(url)
    page.wait_for_selector(".st-key-use_sample button")
    idle(page)
    act(page, ".st-key-use_sample button", "!!document.querySelector('.st-key-confirm_roles')")
    first_clean = open_page(page, "Clean")
    first_data = open_page(page, "Data")
    print(f"  first visits (computing): Clean {first_clean:.0f} ms, Data {first_data:.0f} ms")
    to_clean, to_data = [], []
    for _ in range(n):
        to_clean.append(open_page(page, "Clean"))
        to_data.append(open_page(page, "Data"))
    print("  cached, ms: Clean " + ", ".join(f"{t:.0f}" for t in to_clean))
    print("  cached, ms: Data " + ", ".join(f"{t:.0f}" for t in to_data))
    return to_clean, to_data


def ten_thousand_rows(path: Path) -> Path:
    x, y = make_classification(
        n_samples=10_000, n_features=10, n_informative=6, class_sep=0.8, random_state=0
    )
    frame = pd.DataFrame(x.round(5), columns=[f"feature_{i:02d}" for i in range(10)])
    frame.insert(0, "case_id", [f"C{i:05d}" for i in range(len(frame))])
    frame["diagnosis"] = np.where(y == 1, "malignant", "benign")
    frame.to_csv(path, index=False)
    return path


def bench_slider(page: Page, url: str, csv: Path, n: int) -> list[float]:
    """Milliseconds from a key press on the threshold slider to the new confusion matrix drawn
    (its title names the new threshold); the fragment's whole run is printed alongside."""
    page.goto(url)
    page.wait_for_selector(".st-key-upload [data-testid=stFileUploaderDropzone]")
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
    model = page.locator(".st-key-train_model input[role=combobox]")
    model.click()
    page.get_by_role("option", name="Logistic regression").click()
    idle(page)
    page.wait_for_timeout(500)
    idle(page)
    seconds = act(
        page,
        ".st-key-train_go button",
        "!!document.querySelector('h3') && [...document.querySelectorAll('h3')]"
        ".some(h => h.textContent.startsWith('Model in use'))",
    )
    print(f"  logistic regression on 10,000 rows trained in {seconds / 1000:.1f} s (click to card)")
    open_page(page, "Evaluate", "!!document.querySelector('.st-key-eval_confusion .main-svg')")
    thumb = ".st-key-eval_threshold input[type=range]"
    page.locator(thumb).focus()
    chart = ".st-key-eval_confusion [data-testid=stPlotlyChart]"
    updates, finishes = [], []
    for i in range(n):
        key = "ArrowRight" if i % 2 == 0 else "ArrowLeft"
        value = float(page.locator(thumb).input_value())
        target = value + (0.01 if key == "ArrowRight" else -0.01)
        done = (
            f"(document.querySelector({chart!r}) || {{}}).textContent?.includes("
            f"'Counts at {target:.2f}') && !!document.querySelector('{chart} .main-svg')"
        )
        updates.append(act(page, thumb, done, key=key, finished=False))
        page.wait_for_function(
            "() => window.__bench.done > window.__benchDone0"
            " && document.querySelector('[data-testid=stApp]')"
            ".getAttribute('data-test-script-state') === 'notRunning'",
            timeout=LONG_MS,
        )
        finishes.append(float(page.evaluate("() => window.__bench.lastDone - window.__benchT0")))
        page.wait_for_timeout(200)
    print(
        "  per move, ms to the new confusion matrix: "
        + ", ".join(f"{t:.0f}" for t in updates)
        + "\n  per move, ms to the fragment's run finished (all three figures sent): "
        + ", ".join(f"{t:.0f}" for t in finishes)
    )
    return updates


def bench_auto(page: Page, url: str) -> float:
    """Seconds from clicking Train (auto, the sample) to the leaderboard drawn."""
    page.goto(url)
    page.wait_for_selector(".st-key-use_sample button")
    idle(page)
    act(page, ".st-key-use_sample button", "!!document.querySelector('.st-key-confirm_roles')")
    open_page(page, "Clean")
    open_page(page, "Train")
    chosen = page.locator(".st-key-train_model input[role=combobox]").input_value()
    if not chosen.lower().startswith("auto"):
        raise SystemExit(f"the Train page did not start on auto but on {chosen!r}")
    ms = act(
        page,
        ".st-key-train_go button",
        "!!document.querySelector('.st-key-train_board .main-svg')",
    )
    return ms / 1000


def line(name: str, value: float, unit: str, target: float, spread: str = "") -> None:
    verdict = "meets" if value <= target else "MISSES"
    print(f"{name:<58} {value:8.2f} {unit:<3} target ≤ {target:g} {unit}  {verdict}{spread}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="server starts timed")
    parser.add_argument("--switches", type=int, default=5, help="cached page switches timed")
    parser.add_argument("--moves", type=int, default=10, help="threshold moves timed")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium not found at {CHROMIUM}; set MEDIMG_CHROMIUM")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="medimg-bench-") as tmp, sync_playwright() as p:
        home = Path(tmp)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        print("server start to first page interactive")
        starts = bench_start(browser, home, args.starts)
        with medimg_server(home / "main") as (url, proc, _):
            wait_healthy(url, proc)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            print("cached page switches (sample loaded)")
            to_clean, to_data = bench_switch(page, url, args.switches)
            print("threshold slider, 10,000 rows")
            slider = bench_slider(
                page, url, ten_thousand_rows(home / "ten-thousand.csv"), args.moves
            )
            print("auto training on the sample")
            context.close()
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            auto = bench_auto(context.new_page(), url)
            context.close()
        browser.close()

    def spread(values: list[float], fmt: str) -> str:
        return f"  (min {fmt.format(min(values))}, max {fmt.format(max(values))}, n={len(values)})"

    print()
    print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    line(
        "server start → first page interactive (median)",
        statistics.median(starts),
        "s",
        5,
        spread(starts, "{:.2f}"),
    )
    line(
        "switch to cached Clean page (median)",
        statistics.median(to_clean) / 1000,
        "s",
        1,
        spread([t / 1000 for t in to_clean], "{:.2f}"),
    )
    line(
        "switch to cached Data page (median)",
        statistics.median(to_data) / 1000,
        "s",
        1,
        spread([t / 1000 for t in to_data], "{:.2f}"),
    )
    line(
        "threshold slider → confusion matrix, 10,000 rows (median)",
        statistics.median(slider),
        "ms",
        300,
        spread(slider, "{:.0f}"),
    )
    line("auto training on the sample → leaderboard", auto, "s", 30)


if __name__ == "__main__":
    main()
