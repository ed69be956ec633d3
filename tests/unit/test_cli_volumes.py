"""The command line on 3D studies: features with --params, train on them, predict new cases."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from medimg_core.cli import main
from medimg_core.imaging.features import read_feature_settings
from medimg_core.store.persistence import load_model
from tests.unit.imaging.synthetic_volumes import write_study

FAST = ["--model", "logreg", "--cv", "3", "--n-boot", "100", "--workers", "1"]
PARAMS = """\
# A small PyRadiomics-layout parameter file: original image, three feature classes.
setting:
  binWidth: 25
  resampledPixelSpacing: [1, 1, 1]
  interpolator: sitkBSpline
  label: 1
imageType:
  Original: {}
featureClass:
  shape:
  firstorder:
  glcm: [Contrast, JointEnergy, Idmn]
"""


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@dataclass(frozen=True)
class VolumeModel:
    base: Path
    study: Path
    params: Path
    features: Path
    model_dir: Path
    results: tuple[tuple[int, str, str], ...]


# One worker runs the whole module: under xdist its module-scoped fixture (a cluster or
# trained runs) would otherwise be built again on the other worker.
pytestmark = pytest.mark.xdist_group("cli-volumes")


@pytest.fixture(scope="module")
def volume_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolumeModel]:
    base = tmp_path_factory.mktemp("cli-volumes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        study = write_study(base / "study", 8, seed=21)
        params = base / "radiomics.yaml"
        params.write_text(PARAMS, encoding="utf-8")
        features = base / "features.parquet"
        extracted = run(
            ["features", str(study), "--params", str(params), "-o", str(features), "--workers", "1"]
        )
        model_dir = base / "models" / "lesions"
        trained = run(["train", str(features), *FAST, "-o", str(model_dir)])
        yield VolumeModel(base, study, params, features, model_dir, (extracted, trained))


@pytest.fixture
def home(volume_model: VolumeModel, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(volume_model.base / "ws"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return volume_model.base


def test_features_on_a_study_with_params_writes_radiomics_and_their_settings(
    volume_model: VolumeModel,
) -> None:
    status, out, err = volume_model.results[0]
    assert status == 0, err
    assert "IBSI radiomic features from 16 cases" in out
    frame = pd.read_parquet(volume_model.features)
    assert len(frame) == 16
    assert {"case", "label", "original_shape_MeshVolume", "original_glcm_Contrast"} <= set(
        frame.columns
    )
    assert "original_glcm_ClusterShade" not in frame.columns  # not asked for in the YAML
    settings = read_feature_settings(volume_model.features)
    assert settings is not None and settings["kind"] == "radiomics"


def test_train_on_the_features_keeps_the_radiomics_settings_in_the_card(
    volume_model: VolumeModel,
) -> None:
    status, _out, err = volume_model.results[1]
    assert status == 0, err
    card = load_model(volume_model.model_dir).card
    settings = card["features"]["image_settings"]
    assert settings["kind"] == "radiomics"
    assert "case" not in card["features"]["feature_columns"]
    meaning = card["features"]["descriptions"]["original_shape_MeshVolume"]
    assert "IBSI" in meaning


def test_predict_new_cases_reextracts_with_the_models_settings(
    volume_model: VolumeModel, home: Path, tmp_path: Path
) -> None:
    new = write_study(tmp_path / "new", 2, seed=99, labelled=False)
    out = tmp_path / "pred.csv"
    status, _, err = run(
        ["predict", str(volume_model.model_dir), str(new), "-o", str(out), "--workers", "1"]
    )
    assert status == 0, err
    frame = pd.read_csv(out)
    assert len(frame) == 4
    assert "case" in frame.columns
    probability = next(c for c in frame.columns if str(c).startswith("p_"))
    scores = frame.set_index("case")[probability]
    # The generated malignant lesions are larger and heterogeneous: a model that learnt
    # anything ranks them above the benign ones.
    assert scores[["mal00", "mal01"]].min() > scores[["ben00", "ben01"]].max()


def test_train_directly_on_a_study_folder(home: Path, tmp_path: Path) -> None:
    study = write_study(tmp_path / "study", 6, seed=5)
    model_dir = tmp_path / "m"
    status, _out, err = run(["train", str(study), *FAST, "-o", str(model_dir)])
    assert status == 0, err
    card = load_model(model_dir).card
    assert card["features"]["image_settings"]["kind"] == "radiomics"


def test_params_on_a_table_is_refused(home: Path, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text(PARAMS, encoding="utf-8")
    status, _, err = run(["train", "sample:wdbc", "--params", str(params), "-o", "m"])
    assert status == 2
    assert "--params apply to image data" in err or "--params applies" in err


def test_bad_params_name_the_problem(home: Path, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("setting:\n  binWidht: 25\n", encoding="utf-8")
    study = write_study(tmp_path / "study", 1, seed=6)
    status, _, err = run(
        ["features", str(study), "--params", str(params), "-o", str(tmp_path / "f.parquet")]
    )
    assert status == 2
    assert "binWidht" in err
    assert not (tmp_path / "f.parquet").exists()
