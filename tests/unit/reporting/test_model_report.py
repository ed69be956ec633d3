"""The model report: every section, "not stated", the checklist, and HTML and PDF as read."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import pytest
from PIL import Image

from medimg_core.access import SINGLE_USER
from medimg_core.cli import main
from medimg_core.errors import ConfigError, RegistryError
from medimg_core.modelling.evaluation import format_metric
from medimg_core.reporting.model_report import (
    CHECKLIST,
    NOT_STATED,
    ModelReport,
    build_report,
    report_html,
    report_pdf,
    run_report,
    write_report,
)
from medimg_core.reporting.summaries import card_metric, metric_from_card
from medimg_core.store.cases import load_cases
from medimg_core.store.persistence import load_model
from medimg_core.store.registry import Registry

FAST = ["--model", "logreg", "--cv", "3", "--n-boot", "100"]
REQUIRED = (
    "identity",
    "context",
    "flow",
    "characteristics",
    "validation",
    "performance",
    "calibration",
    "explanation",
    "errors",
    "external",
    "feedback",
    "warnings",
    "checklist",
)
PDF_TOOLS = shutil.which("pdftoppm") is not None and shutil.which("pdftotext") is not None


def needs_pdf_tools() -> None:
    if PDF_TOOLS:
        return
    if os.environ.get("MEDIMG_REQUIRE_PDFTOOLS") == "1":
        pytest.fail("pdftoppm/pdftotext (poppler-utils) are required here but not installed")
    pytest.skip("pdftoppm/pdftotext (poppler-utils) are not installed; apt install poppler-utils")


def tiny_png(fig: go.Figure) -> bytes:
    """Stands in for the figure exporter where the figure's pixels are not the point."""
    buffer = io.BytesIO()
    Image.new("RGB", (72, 40), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Run:
    home: Path
    model_dir: Path
    run_id: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        model_dir = base / "models" / "wdbc"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["train", "sample:wdbc", *FAST, "-o", str(model_dir)]) == 0
        with Registry() as registry:
            (record,) = registry.list_runs(SINGLE_USER)
        yield Run(base / "ws", model_dir, record.id)


@pytest.fixture
def home(run: Run, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(run.home))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return run.home


@pytest.fixture
def report(run: Run, home: Path) -> ModelReport:
    return run_report(SINGLE_USER, run.run_id)


def all_text(report: ModelReport) -> str:
    parts: list[str] = []
    for section in report.sections:
        parts += [section.title, *section.paragraphs]
        for table in section.tables:
            parts += [*table.headers, *(c for row in table.rows for c in row)]
        parts += [f.caption for f in section.figures]
    return "\n".join(parts)


def test_every_required_section_is_present_in_order(report: ModelReport, run: Run) -> None:
    assert [k for k in report.keys if k in REQUIRED] == list(REQUIRED)
    assert report.run_id == run.run_id
    assert report.keys[-1] == "checklist"
    identity = dict(report.section("identity").tables[0].rows)
    card = load_model(run.model_dir).card
    assert identity["Run"] == run.run_id
    assert identity["Model file SHA-256"] == card["model_sha256"]
    assert identity["Data hash (SHA-256 of the cleaned table)"] == card["dataset"]["hash"]
    assert identity["Random seed"] == "42"
    assert "sklearn" in identity["Library versions"]
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC", identity["Trained"])


def test_unstated_context_reads_not_stated(report: ModelReport) -> None:
    rows = dict(report.section("context").tables[0].rows)
    assert rows["Intended use"] == NOT_STATED
    assert rows["Target population"] == NOT_STATED
    assert rows["Reference standard"] == NOT_STATED


def test_stated_context_is_shown_and_the_rest_not_stated(run: Run, home: Path) -> None:
    with Registry() as registry:
        registry.set_run_context(
            SINGLE_USER,
            run.run_id,
            intended_use="Triage of aspirates",
            reference_standard="Histology",
        )
        try:
            rows = dict(
                run_report(SINGLE_USER, run.run_id, registry=registry, explain_errors=False)
                .section("context")
                .tables[0]
                .rows
            )
        finally:
            registry.set_run_context(
                SINGLE_USER, run.run_id, intended_use="", reference_standard=""
            )
    assert rows["Intended use"] == "Triage of aspirates"
    assert rows["Reference standard"] == "Histology"
    assert rows["Target population"] == NOT_STATED


def test_metrics_are_the_cards_numbers(report: ModelReport, run: Run) -> None:
    card = load_model(run.model_dir).card
    table = report.section("performance").tables[0]
    rows = {row[0]: row[1:] for row in table.rows}
    assert table.headers[1:3] == ("Cross-validated (development)", "Held-out test")
    for key, label in (("roc_auc", "ROC AUC"), ("sensitivity", "Sensitivity for malignant")):
        assert rows[label][0] == format_metric(card_metric(card, "cv", key))
        assert rows[label][1] == format_metric(card_metric(card, "test", key))


def test_the_calibration_figure_shows_the_tables_numbers(report: ModelReport, run: Run) -> None:
    card = load_model(run.model_dir).card
    section = report.section("calibration")
    rows = {row[0]: row for row in section.tables[0].rows}
    cv = rows["Cross-validated (development)"]
    assert cv[1] == f"{card['calibration']['cv']['intercept']:.2f}"
    assert cv[2] == f"{card['calibration']['cv']['slope']:.2f}"
    (figure,) = section.figures
    assert f"intercept {cv[1]}, slope {cv[2]}" in figure.caption
    curve = card["calibration"]["cv"]["curve"]
    trace = figure.figure.data[0]
    assert list(trace.x) == pytest.approx(curve["mean_predicted"])
    assert list(trace.y) == pytest.approx(curve["observed"])


def test_characteristics_per_partition(report: ModelReport, run: Run) -> None:
    cases = load_cases(run.model_dir)
    section = report.section("characteristics")
    balance = {row[0]: row[1:] for row in section.tables[0].rows}
    dev = cases[cases["partition"] == "development"]
    n_mal = int((dev["diagnosis"] == "malignant").sum())
    assert balance["malignant"][0].startswith(f"{n_mal:,} (")
    assert "None of the 30 predictors had a missing value" in section.paragraphs[0]
    spread = section.tables[1]
    assert spread.headers == ("Feature", "Development", "Test")
    feature = spread.rows[0][0]
    assert spread.rows[0][1].startswith(f"{dev[feature].median():.3g} (")


def test_typical_errors_name_no_identifying_column(report: ModelReport, run: Run) -> None:
    section = report.section("errors")
    (table,) = section.tables
    assert {row[0] for row in table.rows} <= {"False negative", "False positive"}
    cases = load_cases(run.model_dir)
    pseudonyms = {str(v)[:12] for v in cases["case_id"]}
    for row in table.rows:
        assert row[2].startswith("patient ")
        assert row[2].removeprefix("patient ") in pseudonyms
        assert re.search(r"\(([+-])\d+\.\d\d\)", row[4])
    # The uploaded sample IDs never appear (they are keyed pseudonyms in the cases).
    assert "WDBC-" not in all_text(report)


def test_every_checklist_item_points_at_a_section_or_says_why_not(report: ModelReport) -> None:
    assert len(report.checklist) == len(CHECKLIST)
    standards = {it.standard for it in report.checklist}
    assert standards == {"TRIPOD+AI", "CLAIM"}
    for item in report.checklist:
        if item.section is None:
            assert item.note, item
        else:
            assert item.section in report.keys, item
    rows = report.section("checklist").tables[0].rows
    assert len(rows) == len(CHECKLIST)
    by_item = {row[0]: row[2] for row in rows}
    assert by_item["CLAIM 21"] == report.numbered_title("validation")
    assert by_item["TRIPOD+AI 23a"] == report.numbered_title("performance")
    # No subgroup analysis for this run: its items say so instead of pointing nowhere.
    if "subgroups" not in report.keys:
        item = next(it for it in report.checklist if it.item == "23b")
        assert item.section is None and "no site, sex, age or marked subgroup" in item.note
    # Nor an external evaluation or a recalibrated version: the section says so, the checklist
    # does not claim it.
    for number in ("12f", "12g", "24"):
        item = next(it for it in report.checklist if it.item == number)
        assert item.section is None and "not reported for this run" in item.note


def test_a_model_without_cases_still_reports_from_its_card(run: Run, home: Path) -> None:
    loaded = load_model(run.model_dir)
    report = build_report(model=loaded.model, card=loaded.card, cases=None, run_id="x")
    assert report.section("errors").paragraphs[0].startswith("Not reported")
    rows = {row[0]: row[1:] for row in report.section("performance").tables[0].rows}
    assert rows["ROC AUC"][0] == format_metric(card_metric(loaded.card, "cv", "roc_auc"))


def test_html_is_self_contained_with_the_cards_numbers(report: ModelReport, run: Run) -> None:
    page = report_html(report, image=tiny_png)
    card = load_model(run.model_dir).card
    assert "<script" not in page and "plotly" not in page.lower()
    assert page.count('<img src="data:image/png;base64,') == sum(
        len(s.figures) for s in report.sections
    )
    assert format_metric(card_metric(card, "cv", "roc_auc")) in page
    assert format_metric(card_metric(card, "test", "roc_auc")) in page
    for section in report.sections:
        assert f"<h2>{report.numbered_title(section.key)}</h2>" in page
    assert "@media print" in page


def pdf_pages(pdf: bytes, tmp_path: Path) -> tuple[str, list[Path]]:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(path), str(tmp_path / "page")], check=True)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    return text, sorted(tmp_path.glob("page-*.png"))


def test_pdf_reads_as_text_with_sections_numbers_and_page_numbers(
    report: ModelReport, run: Run, tmp_path: Path
) -> None:
    needs_pdf_tools()
    text, pages = pdf_pages(report_pdf(report, image=tiny_png), tmp_path)
    assert len(pages) >= 4
    flat = " ".join(text.split())
    for section in report.sections:
        assert " ".join(f"{report.numbered_title(section.key)}".split()) in flat
    card = load_model(run.model_dir).card
    assert format_metric(card_metric(card, "cv", "roc_auc")) in flat
    assert f"page 1 of {len(pages)}" in flat and f"page {len(pages)} of {len(pages)}" in flat
    assert text.count(f"run {run.run_id}") == len(pages)  # the header of every page


def test_pdf_without_a_unicode_font_falls_back_to_latin1(
    report: ModelReport, tmp_path: Path
) -> None:
    needs_pdf_tools()
    text, pages = pdf_pages(report_pdf(report, image=tiny_png, unicode_font=False), tmp_path)
    assert pages
    flat = " ".join(text.split())
    assert "Model and run" in flat
    assert re.search(r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\)", flat)  # the en dash became "-"


def test_pdf_figures_are_drawn_by_the_exporter(report: ModelReport, tmp_path: Path) -> None:
    needs_pdf_tools()
    pdf = report_pdf(report)
    _, pages = pdf_pages(pdf, tmp_path)
    assert len(pdf) > 40_000  # two figures at print resolution
    assert len(pages) >= 4


def test_write_report_is_atomic_and_refuses_other_extensions(
    report: ModelReport, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"name it report\.pdf for a PDF or report\.html"):
        write_report(report, tmp_path / "report.docx")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_run_is_refused(home: Path) -> None:
    with pytest.raises(RegistryError, match="no such run in your projects"):
        run_report(SINGLE_USER, "20260101-000000-000000-abcdef")


def test_the_decision_curve_shows_the_cards_net_benefit(report: ModelReport, run: Run) -> None:
    card = load_model(run.model_dir).card
    section = report.section("decision")
    rows = [r for r in section.tables[0].rows if r[1].endswith("(chosen)")]
    assert [r[0] for r in rows] == ["Cross-validated (development)", "Held-out test"]
    for row, part in zip(rows, ("cv", "test"), strict=True):
        chosen = card["decision_curve"][part]["chosen"]
        assert row[2] == f"{chosen['net_benefit']:.3f}"
        assert row[3] == f"{chosen['treat_all']:.3f}"
        assert f"net benefit {row[2]} vs {row[3]} treating all" in section.figures[0].caption
    from medimg_core.modelling.decision import evaluation_curve
    from medimg_core.store.cases import case_evaluations

    cv, _ = case_evaluations(load_model(run.model_dir).model, load_cases(run.model_dir), n_boot=20)
    curve = evaluation_curve(cv)
    assert curve is not None
    model_trace = section.figures[0].figure.data[0]
    assert list(model_trace.y) == pytest.approx(list(curve.net_benefit))


def test_prediction_sets_report_the_cards_coverage(report: ModelReport, run: Run) -> None:
    card = load_model(run.model_dir).card
    rows = {r[0]: r for r in report.section("conformal").tables[0].rows}
    for target, key in (("90%", "0.9"), ("95%", "0.95")):
        entry = card["conformal"][key]
        assert rows[target][1].startswith(f"{entry['test_coverage']:.1%} (")
        assert rows[target][3] == f"{entry['set_sizes']['single']:,}"
        assert rows[target][6] == f"{entry['n_calibration']:,}"


def test_subgroups_and_sites_are_tabled_and_drawn(run: Run, home: Path) -> None:
    from medimg_core.modelling.subgroups import subgroup_card, subgroup_metrics

    loaded = load_model(run.model_dir)
    cases = load_cases(run.model_dir).copy()
    cases["sex"] = ["F" if i % 3 else "M" for i in range(len(cases))]
    cases["site"] = ["A" if i % 2 else "B" for i in range(len(cases))]
    entry = subgroup_card(loaded.model, cases, ["sex"], n_boot=50)
    sites = subgroup_metrics(loaded.model, cases, ["site"], partition="cv", n_boot=50)
    loso = {
        "site_column": "site",
        "per_site": [{**g.to_dict(), "partition": "held-out site"} for g in sites],
        "pooled": None,
        "notes": ["Each site held out in turn."],
        "n_sites": 2,
    }
    card = {**loaded.card, "subgroups": entry, "leave_one_site_out": loso}
    report = build_report(
        model=loaded.model, card=card, cases=cases, run_id=run.run_id, explain_errors=False
    )
    section = report.section("subgroups")
    groups, per_site = section.tables
    positive = loaded.model.display_name(loaded.model.positive_class)
    assert groups.headers[:4] == ("Column", "Group", "Data", f"Cases ({positive})")
    assert per_site.headers == groups.headers
    assert {(r[0], r[1], r[2]) for r in groups.rows} == {
        ("sex", g, p) for g in ("F", "M") for p in ("Cross-validated", "Test")
    }
    f_cv = next(r for r in groups.rows if r[1] == "F" and r[2] == "Cross-validated")
    expected = next(g for g in entry["sex"]["cv"] if g["group"] == "F")
    assert f_cv[3] == f"{expected['n']:,} ({expected['n_positive']:,})"
    assert f_cv[4] == format_metric(metric_from_card(expected["metrics"]["roc_auc"]))
    (forest,) = section.figures
    drawn = {y: x for trace in forest.figure.data for x, y in zip(trace.x, trace.y, strict=True)}
    for g in sites:
        assert drawn[next(k for k in drawn if g.group in str(k))] == pytest.approx(
            g.metrics["roc_auc"].value
        )
        assert f"{g.group} {format_metric(g.metrics['roc_auc'])}" in forest.caption
    assert [r[1] for r in per_site.rows] == [g.group for g in sites]
    item = next(it for it in report.checklist if it.item == "23b")
    assert item.section == "subgroups"


def test_every_recorded_external_evaluation_is_reported(
    run: Run, home: Path, tmp_path: Path
) -> None:
    from medimg_core.tables.loading import load_sample

    frame = load_sample("wdbc").frame.iloc[:200].copy()
    frame["worst texture"] = frame["worst texture"] * 1.4  # another site's measurement
    data = tmp_path / "site-b.csv"
    frame.to_csv(data, index=False)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(
            [
                "evaluate",
                str(run.model_dir),
                str(data),
                "--n-boot",
                "50",
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
    assert status == 0
    with Registry() as registry:
        (record,) = registry.list_evaluations(SINGLE_USER, run.run_id)
        report = run_report(SINGLE_USER, run.run_id, registry=registry, explain_errors=False)
    performance = report.section("performance").tables[0]
    column = performance.headers.index(f"External: {record.dataset_name}")
    rows = {r[0]: r for r in performance.rows}
    roc = record.result["metrics"]["roc_auc"]
    assert rows["ROC AUC"][column] == format_metric(metric_from_card(roc))
    calibration = {r[0]: r for r in report.section("calibration").tables[0].rows}
    assert calibration[f"External: {record.dataset_name}"][1] == (
        f"{record.result['calibration']['intercept']:.2f}"
    )
    external = report.section("external")
    assert external.paragraphs[0].startswith(f"{record.dataset_name}: 200 cases")
    shift = external.tables[0]
    assert shift.rows[0][0] == record.result["shift"][0]["feature"] == "worst texture"
    assert shift.rows[0][1] == f"{record.result['shift'][0]['smd']:.2f}"
    item = next(it for it in report.checklist if it.item == "32")
    assert item.section == "external"
    assert next(it for it in report.checklist if it.item == "12g").section == "external"
    # Evaluated, not updated: no recalibrated version was saved.
    assert next(it for it in report.checklist if it.item == "24").section is None


def test_reader_feedback_is_summarised(run: Run, home: Path) -> None:
    with Registry() as registry:
        for ref, verdict in (("case-1", "agree"), ("case-2", "disagree"), ("case-3", "unsure")):
            registry.record_feedback(
                SINGLE_USER,
                run.run_id,
                case_ref=ref,
                verdict=verdict,
                source="explain",
                predicted="malignant",
                probability=0.8,
            )
        report = run_report(SINGLE_USER, run.run_id, registry=registry, explain_errors=False)
    section = report.section("feedback")
    assert section.paragraphs[0].startswith("3 case(s) judged by 1 reader(s): agree 1, disagree 1")
    assert "agreement rate 50%" in section.paragraphs[0]
    assert section.tables[0].rows == (("malignant", "1", "1", "1"),)


def test_partition_curves_differ_in_black_and_white(report: ModelReport) -> None:
    from medimg_core.reporting.figures.static import print_ready

    for key in ("performance", "calibration"):
        (figure,) = report.section(key).figures
        dashes = [t.line.dash for t in print_ready(figure.figure).data]
        assert len(set(dashes)) == len(dashes), (key, dashes)
