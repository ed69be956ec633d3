"""``medimg runs compare RUN_A RUN_B``: two runs' ROC AUC on the same cases, paired."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.modelling.paired import compare_paired
from medimg_core.store.audit import AuditTrail
from medimg_core.store.cases import load_cases
from medimg_core.store.registry import Registry
from tests.unit.test_cli import run

FAST = ["--cv", "3", "--n-boot", "50", "--seed", "3"]


# One worker runs the whole module: under xdist its module-scoped fixture (a cluster or
# trained runs) would otherwise be built again on the other worker.
pytestmark = pytest.mark.xdist_group("runs-compare")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Three runs on the sample: logistic regression and k-NN on one split, and k-NN on
    another split (a different seed)."""
    base = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        ids: dict[str, str] = {}
        for name, kind, extra in (
            ("logreg", "logreg", []),
            ("knn", "knn", []),
            ("other_split", "knn", ["--seed", "4"]),
        ):
            argv = ["train", "sample:wdbc", "--model", kind, *FAST, *extra]
            status, _, err = run([*argv, "-o", str(base / name)])
            assert status == 0, err
            ids[name] = Registry().list_runs(SINGLE_USER)[0].id
        ids["home"] = str(base / "ws")
        yield ids


@pytest.fixture
def runs(workspace: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("MEDIMG_HOME", workspace["home"])
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return workspace


def test_compare_prints_both_aucs_the_paired_difference_and_writes_json(
    runs: dict[str, str], tmp_path: Path
) -> None:
    out_file = tmp_path / "compare.json"
    status, out, err = run(
        ["runs", "compare", runs["logreg"], runs["knn"], "--json", str(out_file)]
    )
    assert status == 0, err
    # The numbers printed are DeLong's on the stored test cases of both runs.
    records = {r.id: r for r in Registry().list_runs(SINGLE_USER)}
    cases_a, cases_b = (load_cases(records[runs[k]].model_dir) for k in ("logreg", "knn"))
    a = cases_a[cases_a["partition"] == "test"]
    b = cases_b.loc[a.index]  # the same cases, matched by row key
    assert (b["partition"] == "test").all()
    y = (a["diagnosis"] == "malignant").to_numpy(dtype=int)
    expected = compare_paired(y, a["p_positive"], b["p_positive"], partition="test")
    assert f"same {len(a)} held-out test cases" in out
    assert "positive class: malignant" in out
    assert f"ROC AUC {expected.value_b.value:.3f} (" in out
    lo, hi = expected.difference.ci95
    shown = f"{expected.difference.value:.3f} (95% CI {lo:.3f} to {hi:.3f})".replace("-", "\u2212")
    assert f"Difference B \u2212 A: {shown}" in out
    assert "DeLong test for two correlated ROC AUCs" in out
    assert re.search(r"Run B's ROC AUC is \d\.\d{3} (higher|lower) than Run A's", out)
    assert "uses the test set for selection" in out
    # Sensitivity and specificity at each run's own threshold, naming the class.
    thresholds = [records[runs[k]].threshold for k in ("logreg", "knn")]
    positive = (a["diagnosis"] == "malignant").to_numpy()
    sens_b = (b["p_positive"][positive] >= thresholds[1]).mean()
    row = next(line for line in out.splitlines() if line.startswith("Sensitivity for malignant"))
    assert f"{sens_b:.3f} (" in row
    assert any(line.startswith("Specificity for malignant") for line in out.splitlines())
    assert f"Run B (threshold {thresholds[1]:.3f})" in out
    payload = json.loads(out_file.read_text())
    assert [r["metric"] for r in payload["at_own_threshold"]] == ["sensitivity", "specificity"]
    assert payload["run_a"]["id"] == runs["logreg"]
    assert payload["comparison"]["difference"]["value"] == pytest.approx(expected.difference.value)
    assert payload["comparison"]["p_value"] == pytest.approx(expected.p_value)
    assert payload["sentence"] in out
    # Opening the two runs is audited.
    with Registry() as registry:
        entries = AuditTrail(registry).entries()
    opened = entries.loc[entries["action"] == "open run", "object"]
    assert {runs["logreg"], runs["knn"]} <= set(opened)


def test_compare_on_out_of_fold_cases(runs: dict[str, str]) -> None:
    status, out, err = run(["runs", "compare", runs["knn"], runs["logreg"], "--partition", "cv"])
    assert status == 0, err
    assert "same 455 cross-validated (out-of-fold) cases" in out
    assert "selection" not in out
    aucs = [float(x) for x in re.findall(r"ROC AUC (\d\.\d{3}) \(", out)]
    assert len(aucs) == 2 and all(0.9 < x <= 1.0 for x in aucs)


def test_runs_on_another_split_are_refused_with_the_reason(runs: dict[str, str]) -> None:
    status, out, err = run(["runs", "compare", runs["logreg"], runs["other_split"]])
    assert status == 2
    assert out == ""
    assert "different test split; retrain with the same seed and split" in err
    assert "Traceback" not in err


def test_an_unknown_run_is_an_error(runs: dict[str, str]) -> None:
    status, _, err = run(["runs", "compare", runs["logreg"], "20990101-000000-000000-abcdef"])
    assert status == 2
    assert "no such run" in err


def test_listing_still_works_beside_the_subcommand(runs: dict[str, str]) -> None:
    status, out, _ = run(["runs"])
    assert status == 0
    assert runs["knn"] in out and runs["other_split"] in out
    assert np.sum([runs[k] in out for k in ("logreg", "knn", "other_split")]) == 3
