"""Every file of the hostile corpus through the command line (issue 12).

Each file goes through the command that takes it (``clean``/``train`` for tables, ``features`` for
images, ``predict`` for model folders) via :func:`medimg_core.cli.main`, with stdout and stderr
captured. For every file: exit 0 or 2 (never a bug), no traceback, the outcome the corpus
expects; a refused file prints exactly one ``medimg: error: ...`` line and leaves nothing behind
(no output file, nothing new in the workspace but the registry/audit records of the refusal);
no pickle payload runs, no path escapes, no patient name from a DICOM header is printed.
Timing and memory per file are measured by ``benchmarks/bench_hostile.py``, not asserted here.
"""

from __future__ import annotations

import contextlib
import io
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medimg_core.cli import main
from tests.hostile.corpus import (
    PAYLOAD_MARKER,
    HostileCase,
    LazyCorpus,
    build_corpus,
    cli_argv,
)

# Described at collection without writing anything; written for real once per channel.
CASES = build_corpus(Path("hostile-corpus"), dry_run=True)
ERROR_PREFIX = "medimg: error: "
# Names the registry, audit trail and accounts use: they legitimately record a refusal.
# The workspace's pseudonym key is made once, on first use, whatever the input.
RECORD_NAMES = ("registry.db", "audit", "accounts", "pseudonym.key")
# Cases that train models or unpack bombs: a few seconds each.
SLOW_ATTACKS = ("bomb", "10000x10000", "10mb", "20k")

# No corpus file is over 11 MB: an input that makes the workspace grow by more than this kept
# something it should not have (e.g. extracted a bomb member it never uses).
MAX_GROWTH = 20 * 2**20

# Files a zip-slip member would land on if it escaped.
ESCAPES = (Path("/tmp/medimg-evil.png"),)


def slow(case: HostileCase) -> bool:
    return case.command == "train" or any(word in case.name for word in SLOW_ATTACKS)


# Cases that still fail until another engineer's fix lands (issue 12): name -> who is fixing.
# Strict, so a case that starts passing fails the suite until it is removed from here.
KNOWN_FAILURES: dict[str, str] = {}
"""Corpus cases that fail until their fix lands (strict xfail), by name."""


def marks(case: HostileCase, known: dict[str, str]) -> list[pytest.MarkDecorator]:
    found = [pytest.mark.slow] if slow(case) else []
    if case.name in known:
        found.append(pytest.mark.xfail(strict=True, reason=f"issue 12: {known[case.name]}"))
    return found


def params(channel: str) -> list[object]:
    return [
        pytest.param(case.name, id=case.name, marks=marks(case, KNOWN_FAILURES))
        for case in CASES
        if channel in case.channels
    ]


@dataclass(frozen=True)
class Outcome:
    status: int | None
    stdout: str
    stderr: str
    crash: str | None


def run_cli(argv: list[str]) -> Outcome:
    """``main(argv)`` as a user runs it: output captured, warnings shown as Python shows them
    by default (so a library's warning on stderr is seen), any escaping exception recorded."""
    out, err = io.StringIO(), io.StringIO()
    crash = None
    status = None
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]
        try:
            status = main(argv)
        except BaseException:
            crash = traceback.format_exc()
    return Outcome(status, out.getvalue(), err.getvalue(), crash)


def files_under(root: Path) -> dict[str, int]:
    """Files under ``root`` (but the records of what happened) and their sizes."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.lstat().st_size
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and not p.name.startswith(RECORD_NAMES)
    }


def workspace_growth(before: dict[str, int], after: dict[str, int]) -> int:
    """Bytes added to the workspace (new files and growth of existing ones)."""
    return sum(max(size - before.get(name, 0), 0) for name, size in after.items())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> LazyCorpus:
    return LazyCorpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One workspace for the module, set up (registry, keys) before the first case."""
    home = tmp_path_factory.mktemp("hostile-ws") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(home))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        mp.delenv("MEDIMG_USER", raising=False)
        assert run_cli(["runs"]).status == 0
        yield home


def check(
    case: HostileCase, outcome: Outcome, out: Path, before: dict[str, int], home: Path
) -> None:
    assert outcome.crash is None, f"{case.name}: crashed\n{outcome.crash}"
    text = outcome.stdout + outcome.stderr
    assert "Traceback" not in text, f"{case.name}: traceback in the output\n{outcome.stderr}"
    assert outcome.status in (0, 2), f"{case.name}: exit {outcome.status}\n{outcome.stderr}"
    if case.secret is not None:
        assert case.secret not in text, f"{case.name}: the DICOM patient name was printed"
    assert not (case.path.parent.parent / PAYLOAD_MARKER).exists(), "a pickle payload ran"
    for escaped in ESCAPES:
        assert not escaped.exists(), f"{case.name}: a member escaped to {escaped}"
    stderr_lines = outcome.stderr.strip().splitlines()
    # Only medimg speaks on stderr (its notes, warnings, errors and progress lines): no library
    # warning, no log record, no stray output.
    strays = [line for line in stderr_lines if line and not line.startswith(("medimg:", "["))]
    assert not strays, f"{case.name}: stray lines on stderr: {strays[:3]}"
    after = files_under(home)
    growth = workspace_growth(before, after)
    assert growth <= MAX_GROWTH, f"{case.name}: the workspace grew by {growth:,} bytes"
    if case.expect == "refused":
        assert outcome.status == 2, (
            f"{case.name} ({case.attacks}) was accepted; expected one clear error\n{outcome.stderr}"
        )
        assert len(stderr_lines) == 1, f"{case.name}: expected one line\n{outcome.stderr}"
        assert stderr_lines[0].startswith(ERROR_PREFIX), stderr_lines[0]
        assert len(stderr_lines[0]) > len(ERROR_PREFIX) + 20, "the message says too little"
        assert not files_under(out), f"{case.name}: output left: {list(files_under(out))}"
        left = sorted(set(after) - set(before))
        assert not left, f"{case.name}: refused input left files in the workspace: {left[:5]}"
    else:
        assert outcome.status == 0, (
            f"{case.name} ({case.attacks}) was refused; expected it to work\n{outcome.stderr}"
        )
        assert not any(line.startswith(ERROR_PREFIX) for line in stderr_lines)
        if case.says is not None:
            assert case.says.lower() in text.lower(), (
                f"{case.name} ({case.attacks}): expected a note saying {case.says!r}\n"
                f"{outcome.stderr}"
            )


def run_case(corpus: LazyCorpus, home: Path, name: str, tmp_path: Path) -> None:
    case = corpus.case(name)
    out = tmp_path / "out"
    out.mkdir()
    before = files_under(home)
    outcome = run_cli(cli_argv(case, out))
    check(case, outcome, out, before, home)


@pytest.mark.parametrize("name", params("table"))
def test_table_input(corpus: LazyCorpus, workspace: Path, name: str, tmp_path: Path) -> None:
    run_case(corpus, workspace, name, tmp_path)


@pytest.mark.parametrize("name", params("images"))
def test_image_input(corpus: LazyCorpus, workspace: Path, name: str, tmp_path: Path) -> None:
    run_case(corpus, workspace, name, tmp_path)


@pytest.mark.parametrize("name", params("model"))
def test_model_input(corpus: LazyCorpus, workspace: Path, name: str, tmp_path: Path) -> None:
    run_case(corpus, workspace, name, tmp_path)


def test_corpus_is_large_and_varied() -> None:
    """The issue asks for at least 80 generated files; every channel has refusals and controls."""
    assert len(CASES) >= 80
    for channel in ("table", "images", "model"):
        mine = [c for c in CASES if channel in c.channels]
        assert {c.expect for c in mine} == {"refused", "accepted"}, channel
    assert len({c.name for c in CASES}) == len(CASES)


def test_corpus_files_are_small(tmp_path: Path) -> None:
    """Nothing large on disk: bombs are compressed data or lying headers (the 10 MB text cell
    and the 12 MB model card are the largest files)."""
    cases = build_corpus(tmp_path, ("table", "images"))
    sizes = {c.name: c.path.stat().st_size for c in cases}
    assert max(sizes.values()) <= 11 * 2**20, max(sizes.items(), key=lambda kv: kv[1])
    assert sum(sizes.values()) <= 20 * 2**20
