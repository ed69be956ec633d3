"""``medimg runs --show RUN_ID`` prints the readers' feedback summary of the run."""

from __future__ import annotations

from pathlib import Path

from medimg_core.access import SINGLE_USER
from medimg_core.store import guarded
from medimg_core.store.registry import Registry
from tests.unit.test_cli import Trained, home, run, trained

__all__ = ["home", "trained"]  # test_cli's fixtures: the sample model, trained once here


def test_runs_show_prints_the_readers_feedback(home: Path, trained: Trained) -> None:
    with Registry() as registry:
        [record] = registry.list_runs(SINGLE_USER)
    status, out, err = run(["runs", "--show", record.id])
    assert status == 0, err
    assert "Readers' feedback: No reader has judged this run's predictions yet." in out

    for verdict, predicted, case in (
        ("agree", "malignant", "case-a"),
        ("disagree", "benign", "case-b"),
        ("unsure", "benign", "case-c"),
    ):
        guarded.record_feedback(
            SINGLE_USER,
            record.id,
            client="cli",
            case_ref=case,
            verdict=verdict,
            source="explain",
            predicted=predicted,
            probability=0.6,
        )
    status, out, err = run(["runs", "--show", record.id])
    assert status == 0, err
    [line] = [x for x in out.splitlines() if x.startswith("Readers' feedback:")]
    assert "3 cases judged by 1 reader: 1 agree, 1 disagree, 1 unsure." in line
    assert "50% of the cases they could decide (1 of 2)" in line
    assert "predicted benign: 1 of 1; predicted malignant: 0 of 1" in line
    assert "case-a" not in out
