"""Images through the pages: Data (upload, gallery, roles), Train (an npz's own test split),
Explain (the case's image and its occlusion map) and Predict (new images as cards)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from medimg_core.imaging.feature_table import image_table
from medimg_core.ui import state
from medimg_core.ui.session import image_context
from tests.app.conftest import finish_training, upload

CLASSES = ("normal", "pneumonia")


def texture(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth vertical gradient (class 0) or a noisy checkerboard (class 1), as uint8."""
    y = np.mgrid[0:size, 0:size][0] / size
    if kind == 0:
        img = 0.3 + 0.4 * y + rng.normal(0, 0.02, (size, size))
    else:
        board = (np.indices((size, size)).sum(0) % 2) - 0.5
        img = 0.5 + 0.3 * board + rng.normal(0, 0.1, (size, size))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_zip(n: int = 12, size: int = 16, seed: int = 0, *, labelled: bool = True) -> bytes:
    """A ZIP of ``n`` PNGs per class, in class folders (or flat, unlabelled)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for k, cls in enumerate(CLASSES):
            for i in range(n):
                name = f"{cls}/{cls}_{i:02d}.png" if labelled else f"new_{k}_{i:02d}.png"
                zf.writestr(name, png(texture(k, size, rng)))
    return buffer.getvalue()


def image_npz(n: int = 10, size: int = 12) -> bytes:
    """A MedMNIST-layout npz: train / val / test splits of both textures."""
    rng = np.random.default_rng(3)
    arrays = {}
    for split, count in (("train", n), ("val", n // 2), ("test", n // 2)):
        labels = np.array([i % 2 for i in range(count)])
        arrays[f"{split}_images"] = np.stack([texture(int(k), size, rng) for k in labels])
        arrays[f"{split}_labels"] = labels[:, None]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def element_count(at: AppTest, kind: str) -> int:
    """How many elements of a type ("image", "plotly_chart") the page shows."""
    return len(at.get(kind))


def chart_keys(at: AppTest) -> list[str]:
    return [str(c.proto.id).rsplit("-", 1)[-1] for c in at.get("plotly_chart")]


def images_data_page(open_app: Callable[..., AppTest], data: bytes, name: str) -> AppTest:
    at = open_app("pages/data.py")
    at.radio(key="data_kind").set_value("images").run()
    return upload(at, data, name, key="upload_images")


def walk_to_model(at: AppTest) -> AppTest:
    """Confirm the proposed roles, clean with the suggested plan, train a 3-fold logreg."""
    at.button(key="confirm_roles").click().run()
    at.switch_page("pages/clean.py")
    at.run()
    assert not at.exception
    at.switch_page("pages/train.py")
    at.run()
    at.selectbox(key="train_model").set_value("logreg")
    at.number_input(key="train_folds").set_value(3)
    at.select_slider(key="train_n_boot").set_value(200)
    finish_training(at.button(key="train_go").click().run())
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture(scope="module")
def study_zip() -> bytes:
    return image_zip()


def test_zip_upload_shows_the_gallery_and_sets_the_table(
    open_app: Callable[..., AppTest], study_zip: bytes
) -> None:
    at = images_data_page(open_app, study_zip, "study.zip")
    assert not at.exception
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "24"
    assert metrics["Classes"] == "2"
    assert metrics["Image size"] == "16×16"
    # One class, one page: 12 thumbnails, file names hidden.
    assert element_count(at, "image") == 12
    captions = " ".join(c.value for c in at.caption)
    assert "normal_00.png" not in captions
    assert "One sub-folder per class: normal, pneumonia." in captions

    table = at.session_state[state.TABLE]
    assert table.name == "study.zip"
    assert table.format == "images"
    assert len(table.frame) == 24
    assert {"file", "label", "intensity_mean", "glcm_contrast"} <= set(table.frame.columns)
    ctx = at.session_state[state.IMAGES]
    assert ctx.table_hash == table.content_hash
    proposal = at.session_state[state.PROPOSAL]
    assert proposal.label_candidates[0] == "label"
    assert "file" in proposal.identifying
    assert at.selectbox(key="role_label").value == "label"
    assert "file" in at.multiselect(key="role_exclude").value

    at.selectbox(key="gallery_class").set_value("pneumonia")
    at.checkbox(key="gallery_names").check().run()
    assert "pneumonia_03.png" in " ".join(c for i in at.get("image") for c in i.captions)
    meanings = [d for d in at.dataframe if "feature" in d.value.columns]
    assert meanings and "intensity_mean" in set(meanings[0].value["feature"])


def test_a_table_upload_drops_the_image_context(
    open_app: Callable[..., AppTest], study_zip: bytes
) -> None:
    at = images_data_page(open_app, study_zip, "study.zip")
    at.radio(key="data_kind").set_value("table").run()
    at.button(key="use_sample").click().run()
    assert not at.exception
    assert at.session_state[state.TABLE].format == "sample"
    at.radio(key="data_kind").set_value("images").run()
    assert element_count(at, "image") == 0


def test_a_bad_archive_is_one_error(open_app: Callable[..., AppTest]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("normal/a.png", png(texture(0, 16, np.random.default_rng(0))))
    at = images_data_page(open_app, buffer.getvalue(), "one-class.zip")
    assert not at.exception
    assert len(at.error) == 1
    assert "only one class" in at.error[0].value
    assert element_count(at, "image") == 0
    at.run()
    assert [e.value for e in at.error] == [at.error[0].value]
    assert "only one class" in at.error[0].value


def test_no_server_folder_option_without_image_roots(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDIMG_IMAGE_ROOTS", raising=False)
    at = open_app("pages/data.py")
    at.radio(key="data_kind").set_value("images").run()
    assert not at.exception
    assert at.radio(key="images_source").options == ["Upload a ZIP or .npz"]


def test_a_folder_outside_the_image_roots_is_one_error_naming_nothing(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "images"
    root.mkdir()
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret-patient-list.csv").write_text("name\nJane Doe\n")
    monkeypatch.setenv("MEDIMG_IMAGE_ROOTS", str(root))
    at = open_app("pages/data.py")
    at.radio(key="data_kind").set_value("images").run()
    at.radio(key="images_source").set_value("folder").run()
    at.text_input(key="images_folder").input(str(root / ".." / "private")).run()
    at.button(key="images_folder_go").click().run()
    assert not at.exception
    assert len(at.error) == 1
    assert "not an image folder medimg may read" in at.error[0].value
    assert "secret-patient-list" not in at.error[0].value


def test_a_server_folder_is_read(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with zipfile.ZipFile(io.BytesIO(image_zip(n=8))) as zf:
        zf.extractall(tmp_path / "study")
    monkeypatch.setenv("MEDIMG_IMAGE_ROOTS", str(tmp_path))
    at = open_app("pages/data.py")
    at.radio(key="data_kind").set_value("images").run()
    at.radio(key="images_source").set_value("folder").run()
    assert any(str(tmp_path.resolve()) in c.value for c in at.caption)
    at.text_input(key="images_folder").input("study").run()
    at.button(key="images_folder_go").click().run()
    assert not at.exception
    assert not at.error
    assert at.session_state[state.TABLE].name == "study"
    assert {m.label: m.value for m in at.metric}["Images"] == "16"


def test_npz_keeps_its_test_split_through_training(open_app: Callable[..., AppTest]) -> None:
    at = images_data_page(open_app, image_npz(), "tiny.npz")
    assert not at.exception
    assert any("test split (5" in i.value for i in at.info)
    assert "split" in at.session_state[state.PROPOSAL].identifying
    # Codes 0/1 of an unrecognised file: nothing is pre-selected, confirming waits for a choice.
    assert at.selectbox(key="role_positive").value is None
    assert at.button(key="confirm_roles").disabled
    assert any("do not say which class is the disease" in w.value for w in at.warning)
    at.text_input(key="class_name_label_0").input("normal")
    at.text_input(key="class_name_label_1").input("pneumonia").run()
    assert at.selectbox(key="role_positive").format_func(1) == "1 — pneumonia"
    at.selectbox(key="role_positive").set_value(1).run()
    assert not at.button(key="confirm_roles").disabled
    at = walk_to_model(at)
    assert at.session_state[state.ROLES].class_names == (("0", "normal"), ("1", "pneumonia"))
    markdown = " ".join(m.value for m in at.markdown)
    assert "the file's own test split (5 images)" in markdown
    active = at.session_state[state.ACTIVE]
    assert active.test is not None and active.test.n == 5
    assert active.card["validation"]["settings"]["predefined_test"] is True


def test_a_recognised_medmnist_file_offers_its_published_names(
    open_app: Callable[..., AppTest],
) -> None:
    at = images_data_page(open_app, image_npz(), "breastmnist_128.npz")
    assert not at.exception
    assert at.text_input(key="class_name_label_0").value == "malignant"
    assert at.text_input(key="class_name_label_1").value == "normal, benign"
    assert at.selectbox(key="role_positive").value == 0
    assert any("Recognised as **BreastMNIST**" in c.value for c in at.caption)
    at.button(key="confirm_roles").click().run()
    assert at.session_state[state.POSITIVE] == 0
    assert dict(at.session_state[state.ROLES].class_names) == {
        "0": "malignant",
        "1": "normal, benign",
    }


def test_train_explain_and_predict_on_images(
    open_app: Callable[..., AppTest], study_zip: bytes
) -> None:
    at = walk_to_model(images_data_page(open_app, study_zip, "study.zip"))
    active = at.session_state[state.ACTIVE]
    assert active.images is not None
    assert active.card["features"]["image_settings"]["size"] == [16, 16]

    at.switch_page("pages/explain.py")
    at.run()
    assert not at.exception
    keys = chart_keys(at)
    assert {"explain_waterfall", "explain_case_image", "explain_case_occlusion"} <= set(keys)
    captions = " ".join(c.value for c in at.caption)
    assert "not a lesion segmentation" in captions

    at.switch_page("pages/predict.py")
    at.run()
    upload(at, image_zip(n=3, seed=5, labelled=False), "new.zip", key="predict_upload")
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Scored"] == "6"
    assert element_count(at, "image") == 6
    cards = " ".join(m.value for m in at.markdown)
    assert "P(" in cards
    assert "new_0_00.png" not in " ".join(c.value for c in at.caption)

    one = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(image_zip(n=1, seed=9, labelled=False))) as zf:
        one.write(zf.read("new_1_00.png"))
    upload(at, one.getvalue(), "single.png", key="predict_upload")
    assert not at.exception
    assert not at.error
    assert {m.label: m.value for m in at.metric}["Scored"] == "1"
    assert element_count(at, "image") == 1


def test_explain_without_the_images_says_where_to_get_them(
    open_app: Callable[..., AppTest], study_zip: bytes
) -> None:
    at = walk_to_model(images_data_page(open_app, study_zip, "study.zip"))
    active = at.session_state[state.ACTIVE]
    from dataclasses import replace

    at.session_state[state.ACTIVE] = replace(active, images=None)
    at.session_state[state.IMAGES] = None
    at.switch_page("pages/explain.py")
    at.run()
    assert not at.exception
    assert any("does not hold this case's image" in i.value for i in at.info)
    assert "explain_case_occlusion" not in chart_keys(at)


def test_a_reopened_run_finds_its_images_in_the_session(
    open_app: Callable[..., AppTest], study_zip: bytes
) -> None:
    at = walk_to_model(images_data_page(open_app, study_zip, "study.zip"))
    at.switch_page("pages/runs.py")
    at.run()
    at.button(key="runs_open_explain").click().run()
    assert not at.exception
    reopened = at.session_state[state.ACTIVE]
    assert reopened.images is None
    at.switch_page("pages/explain.py")
    at.run()
    assert not at.exception
    assert {"explain_case_image", "explain_case_occlusion"} <= set(chart_keys(at))


def test_image_context_matches_rows_to_images(tmp_path: Path) -> None:
    table = image_table(image_zip(n=4), workspace=tmp_path, workers=1)
    ctx = image_context(table, "hash", "study.zip")
    files = table.image_set.records["file"].tolist()
    for key, file in zip(table.frame.index, table.frame["file"], strict=True):
        assert files[ctx.position(key)] == file
    cases = table.frame.copy()
    assert ctx.position(3, cases) == ctx.position(3)
    cases.loc[3, "intensity_mean"] += 0.5
    assert ctx.position(3, cases) is None
    assert ctx.position(999) is None


def uploaded_folders(home: Path) -> set[str]:
    uploads = home / "uploads"
    if not uploads.is_dir():
        return set()
    return {p.name for p in uploads.iterdir() if p.is_dir() and not p.name.startswith(".")}


def test_a_replaced_image_upload_is_removed_from_the_workspace(
    open_app: Callable[..., AppTest], app_env: Path
) -> None:
    first = image_zip(n=6, seed=11)
    at = images_data_page(open_app, first, "first.zip")
    assert not at.exception
    held = uploaded_folders(app_env)
    assert len(held) == 1
    upload(at, image_zip(n=6, seed=12), "second.zip", key="upload_images")
    assert not at.exception
    now = uploaded_folders(app_env)
    # The first archive's images are gone; the second's are in use.
    assert len(now) == 1 and not (now & held)
    assert at.session_state[state.IMAGES].table.image_set.load(0).pixels.shape == (16, 16)


def test_the_images_of_the_active_model_stay_while_new_images_come_and_go(
    open_app: Callable[..., AppTest], app_env: Path, study_zip: bytes
) -> None:
    at = walk_to_model(images_data_page(open_app, study_zip, "study.zip"))
    trained_on = uploaded_folders(app_env)
    assert len(trained_on) == 1
    at.switch_page("pages/predict.py")
    at.run()
    upload(at, image_zip(n=3, seed=5, labelled=False), "new.zip", key="predict_upload")
    assert not at.exception and not at.error
    first_new = uploaded_folders(app_env) - trained_on
    assert len(first_new) == 1
    upload(at, image_zip(n=3, seed=6, labelled=False), "newer.zip", key="predict_upload")
    assert not at.exception and not at.error
    now = uploaded_folders(app_env)
    # The replaced new images are removed; the model's own (Explain shows them) are kept.
    assert trained_on <= now and not (first_new & now) and len(now) == 2
    assert at.session_state[state.ACTIVE].images.table.image_set.load(0).pixels.shape == (16, 16)
    assert element_count(at, "image") == 6
