"""The hostile-input corpus through the ``medimg`` command line, one subprocess per file.

For each file of ``tests/hostile/corpus.py``: the outcome (accepted, clear error, or crash:
exit 1, a traceback, an error of more than one line, or a hang), the wall time and the peak
resident memory of that child process (``os.wait4``'s rusage, so each child's own peak), and
whether it matched the corpus' expectation. Then a summary table per channel: inputs tried,
clear errors, accepted, crashes, mismatches, slowest input and peak memory: the table for
issue 12's closing note. Every time includes the interpreter's start (printed once as
"startup" for comparison).

Usage: python benchmarks/bench_hostile.py [--timeout 600] [--only WORD,WORD] [--keep DIR]
Exit status 1 when any input crashed, hung, or did not get the expected outcome.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile.corpus import HostileCase, build_corpus, cli_argv  # noqa: E402

ERROR_PREFIX = "medimg: error: "


@dataclass(frozen=True)
class Result:
    case: HostileCase
    outcome: str  # "accepted", "clear error", "crash", "hang"
    seconds: float
    peak_mb: float
    exit_code: int | None
    detail: str

    @property
    def matches(self) -> bool:
        wanted = "accepted" if self.case.expect == "accepted" else "clear error"
        return self.outcome == wanted


def run_child(
    argv: list[str], env: dict[str, str], timeout: float
) -> tuple[int | None, float, float, str, str, bool]:
    """Run ``python -m medimg_core argv``; exit code, seconds, peak RSS in MB, stdout, stderr,
    and whether it was killed for taking longer than ``timeout``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "medimg_core", *argv], stdout=out, stderr=err, env=env
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            child.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)
        timer.cancel()
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 already
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    return child.returncode, seconds, peak_mb, stdout, stderr, killed.is_set()


def classify(code: int | None, stdout: str, stderr: str, hung: bool) -> tuple[str, str]:
    lines = stderr.strip().splitlines()
    if hung:
        return "hang", "killed after the timeout"
    if "Traceback" in stdout + stderr:
        tail = lines[-1] if lines else ""
        return "crash", f"traceback: {tail[:160]}"
    if code == 0:
        return "accepted", (lines[-1][:160] if lines else "")
    if code == 2 and len(lines) == 1 and lines[0].startswith(ERROR_PREFIX):
        return "clear error", lines[0][len(ERROR_PREFIX) :][:160]
    if code == 2:
        return "crash", f"exit 2 but {len(lines)} stderr lines: {' | '.join(lines)[:160]}"
    return "crash", f"exit {code}: {(lines[-1] if lines else '')[:160]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per input")
    parser.add_argument(
        "--only",
        default="",
        help="run only cases whose name contains one of these comma-separated words",
    )
    parser.add_argument("--keep", metavar="DIR", help="write the corpus here and keep it")
    args = parser.parse_args()

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medimg-hostile-"))
    # A throw-away encryption key beside the corpus: nothing here touches the user's own key.
    os.environ["MEDIMG_KEY_FILE"] = str(base / "key" / "key")
    os.environ.pop("MEDIMG_ENCRYPTION_KEY", None)
    try:
        started = time.perf_counter()
        words = [w for w in args.only.split(",") if w] or [""]
        wanted = {
            c.name: c.channels[0]
            for c in build_corpus(base / "corpus", dry_run=True)
            if any(w in c.name for w in words)
        }
        channels = tuple(dict.fromkeys(wanted.values()))
        cases = [c for c in build_corpus(base / "corpus", channels) if c.name in wanted]
        print(f"corpus: {len(cases)} inputs written in {time.perf_counter() - started:.1f} s")
        env = {**os.environ, "MEDIMG_HOME": str(base / "workspace")}
        env.pop("MEDIMG_DATABASE_URL", None)
        env.pop("MEDIMG_RAISE", None)
        code, seconds, peak, _, err, _ = run_child(["runs"], env, args.timeout)
        assert code == 0, err
        print(f"startup (medimg runs): {seconds:.2f} s, {peak:.0f} MB")
        header = f"{'input':34} {'channel':7} {'expected':9} {'outcome':12} {'time s':>7} {'peak MB':>8}  detail"
        print(header)
        results = []
        for case in cases:
            out = base / "out" / case.name
            out.mkdir(parents=True, exist_ok=True)
            code, seconds, peak, stdout, stderr, hung = run_child(
                cli_argv(case, out), env, args.timeout
            )
            outcome, detail = classify(code, stdout, stderr, hung)
            result = Result(case, outcome, seconds, peak, code, detail)
            results.append(result)
            flag = "" if result.matches else "  <-- expected " + case.expect
            print(
                f"{case.name:34} {case.channels[0]:7} {case.expect:9} {outcome:12} "
                f"{seconds:7.2f} {peak:8.0f}  {detail[:90]}{flag}",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)
        print()
        print(summary(results))
        print(_load_line())
        bad = [r for r in results if not r.matches]
        return 1 if bad else 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def summary(results: list[Result]) -> str:
    """The closing-note table: per channel and in total."""
    rows = [
        "| channel | inputs | clear errors | accepted | crashes/hangs | not as expected | "
        "slowest input | peak memory |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    groups = {
        ch: [r for r in results if r.case.channels[0] == ch] for ch in ("table", "images", "model")
    }
    groups["all"] = results
    for channel, group in groups.items():
        if not group:
            continue
        slowest = max(group, key=lambda r: r.seconds)
        biggest = max(group, key=lambda r: r.peak_mb)
        rows.append(
            f"| {channel} | {len(group)} | "
            f"{sum(r.outcome == 'clear error' for r in group)} | "
            f"{sum(r.outcome == 'accepted' for r in group)} | "
            f"{sum(r.outcome in ('crash', 'hang') for r in group)} | "
            f"{sum(not r.matches for r in group)} | "
            f"{slowest.case.name} ({slowest.seconds:.1f} s) | "
            f"{biggest.peak_mb:.0f} MB ({biggest.case.name}) |"
        )
    return "\n".join(rows)


def _load_line() -> str:
    return f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(main())
