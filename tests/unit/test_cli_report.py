"""`medimg report` and `medimg runs context`: the model report from the command line."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.cli import main
from medimg_core.store.audit import AuditFilter, AuditTrail
from medimg_core.store.registry import Registry

FAST = ["--model", "logreg", "--cv", "3", "--n-boot", "100"]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    base = tmp_path_factory.mktemp("cli_report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        model_dir = base / "models" / "wdbc"
        assert run(["train", "sample:wdbc", *FAST, "-o", str(model_dir)])[0] == 0
        with Registry() as registry:
            (record,) = registry.list_runs(SINGLE_USER)
        yield base / "ws", model_dir, record.id


@pytest.fixture
def home(trained: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(trained[0]))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return trained[0]


def test_runs_context_states_and_shows(trained: tuple[Path, Path, str], home: Path) -> None:
    run_id = trained[2]
    status, out, _ = run(["runs", "context", run_id])
    assert status == 0
    assert "Intended use: not stated" in out
    status, out, err = run(
        [
            "runs",
            "context",
            run_id,
            "--intended-use",
            "Triage of aspirates",
            "--reference-standard",
            "Histology",
        ]
    )
    assert status == 0, err
    assert "Intended use: Triage of aspirates" in out
    assert "Reference standard: Histology" in out
    assert "Target population: not stated" in out
    status, out, _ = run(["runs", "context", run_id])
    assert "Intended use: Triage of aspirates" in out


def test_report_by_run_id_and_by_directory(
    trained: tuple[Path, Path, str], home: Path, tmp_path: Path
) -> None:
    _, model_dir, run_id = trained
    status, out, err = run(["report", run_id, "-o", str(tmp_path / "r.html")])
    assert status == 0, err
    assert f"Wrote the model report of run {run_id}" in out
    assert "TRIPOD+AI / CLAIM items answered" in out
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in page and "1. Model and run" in page
    status, out, err = run(["report", str(model_dir), "-o", str(tmp_path / "r.pdf")])
    assert status == 0, err
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF-")
    assert f"run {run_id}" in out  # a recorded directory is reported as its run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.pdf"]  # no partial file
    with AuditTrail() as trail:
        entries = trail.entries(AuditFilter(action="report"))
    assert list(entries["outcome"])[-2:] == ["ok", "ok"]
    assert list(entries["object"])[-2:] == [run_id, run_id]


def test_report_refuses_a_bad_extension_and_an_unknown_run(
    trained: tuple[Path, Path, str], home: Path, tmp_path: Path
) -> None:
    status, _, err = run(["report", trained[2], "-o", str(tmp_path / "r.docx")])
    assert status == 2
    assert "name it report.pdf for a PDF or report.html for a web page" in err
    status, _, err = run(["report", "20260101-000000-000000-abcdef", "-o", str(tmp_path / "r.pdf")])
    assert status == 2
    assert "no such run in your projects" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
