"""``medimg train`` with site and subgroup columns, and ``--validation leave-one-site-out``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medimg_core.store.persistence import CARD_NAME
from tests.unit.modelling.test_subgroups import sites_table
from tests.unit.test_cli import FAST, assert_one_line_error, run


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return tmp_path


def test_train_leave_one_site_out_prints_and_stores_per_site_results(workspace: Path) -> None:
    data = workspace / "sites.csv"
    sites_table(80).to_csv(data, index=False)
    model_dir = workspace / "model"
    status, out, err = run(
        ["train", str(data), *FAST, "--validation", "leave-one-site-out", "-o", str(model_dir)]
    )
    assert status == 0, err
    card = json.loads((model_dir / CARD_NAME).read_text(encoding="utf-8"))
    # Proposed from the names: the site, and sex and age as subgroups; the name is excluded.
    assert card["roles"]["site"] == "site"
    assert card["roles"]["subgroups"] == ["sex", "age"]
    assert "patient_name" in card["roles"]["exclude"]
    loso = card["leave_one_site_out"]
    assert "Leave-one-site-out validation by site" in out
    for entry in loso["per_site"]:
        auc = entry["metrics"]["roc_auc"]
        shown = f"  {entry['group']} (n={entry['n']}): {auc['value']:.3f} "
        assert shown + f"({auc['ci95'][0]:.3f}–{auc['ci95'][1]:.3f})" in out
    pooled = loso["pooled"]["roc_auc"]["value"]
    assert f"  pooled: {pooled:.3f}" in out
    assert "the deployed model is still the one trained with the normal validation" in out
    # Subgroups on CV and test, from the same card.
    assert "Subgroups by age (in age bands (<40, 40–49, 50–59, 60–69, ≥70 years))" in out
    first = card["subgroups"]["sex"]["test"][0]
    assert f"{first['group']} (n={first['n']}) {first['metrics']['roc_auc']['value']:.3f}" in out
    assert re.search(r"site and subgroup column\(s\) site", out)


def test_leave_one_site_out_with_one_site_is_refused_before_training(workspace: Path) -> None:
    data = workspace / "one_site.csv"
    frame = sites_table(60)
    frame[frame["site"] == "Hospital A"].to_csv(data, index=False)
    status, _out, err = run(
        [
            "train",
            str(data),
            *FAST,
            "--validation",
            "leave-one-site-out",
            "-o",
            str(workspace / "m"),
        ]
    )
    assert_one_line_error(status, err, r"needs at least 2 sites in 'site'.*one site \(Hospital A\)")
    assert not (workspace / "m").exists()


def test_site_and_subgroup_options_name_columns(workspace: Path) -> None:
    data = workspace / "sites.csv"
    frame = sites_table(60).rename(columns={"site": "centre_code"})
    frame["ward"] = ["east", "west"] * (len(frame) // 2)
    frame.to_csv(data, index=False)
    model_dir = workspace / "model"
    status, out, err = run(
        [
            "train",
            str(data),
            *FAST,
            "--site",
            "centre_code",
            "--subgroup",
            "ward",
            "--exclude",
            "ward",
            "-o",
            str(model_dir),
        ]
    )
    assert status == 0, err
    card = json.loads((model_dir / CARD_NAME).read_text(encoding="utf-8"))
    assert card["roles"]["site"] == "centre_code"
    assert card["roles"]["subgroups"] == ["ward"]
    assert list(card["subgroups"]) == ["centre_code", "ward"]
    assert "ward" not in card["features"]["feature_columns"]  # excluded: analysis only
    assert "Leave-one-site-out" not in out
    status, _, err = run(
        ["train", str(data), *FAST, "--subgroup", "nope", "-o", str(workspace / "m2")]
    )
    assert_one_line_error(status, err, "--subgroup")
