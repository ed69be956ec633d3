"""Issue-8 honesty benchmark: run the medimg CLI on each data set and print what it reports.

For each data set (the built-in sample, the mimics of ``datasets.py``, the shared
PneumoniaMNIST copy if present) the script runs ``medimg clean`` (tables) and ``medimg train``
in a throw-away workspace (``MEDIMG_HOME``), then prints one compact table from the files the
CLI wrote: the cleaning report JSON and the model card (``card.json``). Keys a version of medimg
does not write are shown as "n/a", so the same script measures the code before and after the
issue-8 fixes.

Usage::

    # the code under test is the importable medimg_core found on --code (default: this checkout)
    python benchmarks/honesty/run.py --code /tmp/before --out /tmp/issue8_before.txt
    python benchmarks/honesty/run.py --out /tmp/issue8_after.txt

Options: ``--only NAME ...`` to run some data sets, ``--n-boot`` (default 200),
``--no-signal-reps N`` extra no-signal tables (different seeds) to estimate the selection
optimism of ``auto``, ``--python`` for the interpreter (default this one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets

REPO = Path(__file__).resolve().parents[2]
NA = "n/a"


@dataclass(frozen=True)
class Case:
    """One data set and the explicit options every medimg version accepts."""

    name: str
    data: str
    label: str
    positive: str | None
    positive_name: str
    id: str | None = None
    image: bool = False
    fallback_positive: str | None = None  # the class name, if the code form is refused
    extra: tuple[str, ...] = ()  # options given to both clean and train (e.g. --exclude)
    # train options added only when the code under test has them (``train --help``)
    if_supported: tuple[tuple[str, ...], ...] = ()
    note: str = ""


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    card: dict[str, Any] | None = None
    conflicts: pd.DataFrame | None = None

    def add(self, text: str = "") -> None:
        self.lines.append(text)


def cases(data_dir: Path, *, pneumonia: Path | None) -> list[Case]:
    """The benchmark's data sets, built into ``data_dir``."""
    built = datasets.build_all(data_dir)
    out = [
        Case("sample:wdbc", "sample:wdbc", "diagnosis", "malignant", "malignant", id="case_id"),
        Case(
            "wisconsin_original",
            str(built["wisconsin_original"]),
            "class",
            "4",
            "malignant (4)",
            id="id",
            fallback_positive="malignant",
            if_supported=(("--class-names", "2=benign,4=malignant"),),
            note="mimic of UCI Breast Cancer Wisconsin (Original); 8 true repeated records",
        ),
        Case(
            "mammographic",
            str(built["mammographic"]),
            "severity",
            "1",
            "malignant (1)",
            note="mimic of UCI Mammographic Mass; bi_rads is the reader's own assessment",
            if_supported=(("--class-names", "0=benign,1=malignant"), ("--reader", "bi_rads")),
        ),
        Case(
            "mammographic:without-bi_rads",
            str(built["mammographic"]),
            "severity",
            "1",
            "malignant (1)",
            extra=("--exclude", "bi_rads"),
            note="the same table with the reader's BI-RADS assessment left out",
        ),
        Case(
            "breastmnist_like",
            str(built["breastmnist_like"]),
            "label",
            "0",
            "malignant (0)",
            image=True,
            fallback_positive="malignant",
            if_supported=(("--class-names", "0=malignant,1=benign"),),
            note="BreastMNIST coding: 0 = malignant, 1 = benign; 1 test image = a train image",
        ),
        Case(
            "breastmnist_like:default-positive",
            str(built["breastmnist_like"]),
            "label",
            None,
            "not given (medimg's default)",
            image=True,
            note="the same file without --positive: which class does medimg call positive?",
        ),
        Case(
            "no_signal",
            str(built["no_signal"]),
            "outcome",
            "1",
            "1 (coin flip)",
            note="no signal: any AUC away from 0.5 is optimism",
        ),
    ]
    if pneumonia is not None and pneumonia.is_file():
        out.append(
            Case(
                "pneumoniamnist",
                str(pneumonia),
                "label",
                "1",
                "pneumonia (1)",
                image=True,
                fallback_positive="pneumonia",
                note="shared PneumoniaMNIST subset; the file's own test split",
            )
        )
    return out


def _env(code: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code)
    env["MEDIMG_HOME"] = str(home)
    env.pop("MEDIMG_RAISE", None)
    return env


def _medimg(
    python: str, code: Path, home: Path, args: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    # Run from the workspace so a relative default path never lands in a checkout.
    return subprocess.run(
        [python, "-m", "medimg_core", *args],
        cwd=home,
        env=_env(code, home),
        capture_output=True,
        text=True,
        check=False,
    )


_HELP: dict[tuple[str, Path], str] = {}


def _train_help(python: str, code: Path, home: Path) -> str:
    """``medimg train --help`` of the code under test (to add options only it knows)."""
    key = (python, code)
    if key not in _HELP:
        _HELP[key] = _medimg(python, code, home, ["train", "--help"]).stdout
    return _HELP[key]


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    else:
        yield path, obj


_SELECTION_FREE = ("selection_free", "selection-free", "nested")


def _find_metric(obj: Any, words: Sequence[str], path: str = "") -> dict[str, Any] | None:
    """The first ``{"value": ..., "ci95": ...}`` whose key path names one of ``words``."""
    if not isinstance(obj, dict):
        return None
    if "value" in obj and any(w in path.lower() for w in words):
        return obj
    for key, value in obj.items():
        found = _find_metric(value, words, f"{path}.{key}")
        if found is not None:
            return found
    return None


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return NA
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _metric(metric: Any) -> str:
    """``{"value": v, "ci95": [lo, hi]}`` as ``v (lo-hi)``; anything else as n/a."""
    if not isinstance(metric, dict) or metric.get("value") is None:
        return NA
    text = f"{metric['value']:.3f}"
    ci = metric.get("ci95") or [None, None]
    if len(ci) == 2 and None not in ci:
        text += f" ({ci[0]:.3f}-{ci[1]:.3f})"
    return text


def _excludes_half(metric: Any) -> bool | None:
    ci = metric.get("ci95") if isinstance(metric, dict) else None
    if not ci or len(ci) != 2 or None in ci:
        return None
    return bool(ci[0] > 0.5 or ci[1] < 0.5)


def _class_counts(series: pd.Series) -> dict[str, int]:
    counts = series.dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or NA


def _prevalence(counts: dict[str, int], positive: str | None) -> str:
    total = sum(counts.values())
    if not total or positive not in counts:
        return NA
    return f"{counts[positive] / total:.1%}"


def _read_table(path: str) -> pd.DataFrame:
    return pd.read_csv(path, na_values=["?"], keep_default_na=True)


def _conflict_rows(frame: pd.DataFrame, case: Case) -> pd.DataFrame:
    """Complete rows whose feature values recur with another label (the hard cases).

    Features are every column but the label, the ID and ``--exclude``d columns.
    """
    excluded = {case.label, case.id}
    if "--exclude" in case.extra:
        excluded.update(case.extra[case.extra.index("--exclude") + 1 :])
    features = [c for c in frame.columns if c not in excluded]
    complete = frame.dropna(subset=[*features, case.label])
    n_labels = complete.groupby(features, dropna=False)[case.label].transform("nunique")
    return complete[n_labels > 1]


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _error_text(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["(no message)"])[-1].strip()


def _stderr_notes(proc: subprocess.CompletedProcess[str]) -> list[str]:
    notes = []
    for line in (proc.stderr or "").splitlines():
        line = line.strip().replace("\r", "")
        if line.startswith("medimg: ") and not line.startswith("medimg: error"):
            notes.append(line.removeprefix("medimg: "))
    return notes


_INTERESTING = (
    "selection_free",
    "selection-free",
    "nested",
    "calibration",
    "prevalence",
    "class_names",
    "positive_name",
    "duplicate_candidates",
    "identical_rows",
    "ids_in_both",
    "reader",
    "without",
)


def _extra_card_figures(card: dict[str, Any]) -> list[str]:
    """Scalar figures whose key names suggest the issue-8 additions (absent before the fixes)."""
    out = []
    for path, value in _walk(card):
        if path.startswith(("cleaning.plan", "validation.settings", "versions", "features")):
            continue
        if any(word in path.lower() for word in _INTERESTING) and not isinstance(value, list):
            out.append(f"{path} = {_num(value)}")
        elif (
            any(word in path.lower() for word in _INTERESTING)
            and isinstance(value, list)
            and len(value) <= 4
            and all(isinstance(v, int | float | str) or v is None for v in value)
        ):
            out.append(f"{path} = {value}")
    return out[:40]


def _clean_step(case: Case, python: str, code: Path, home: Path, work: Path, out: Outcome) -> None:
    frame = _read_table(case.data) if case.data.endswith(".csv") else None
    report_path, clean_path = work / "clean_report.json", work / "clean.parquet"
    args = ["clean", case.data, "--label", case.label, "-o", str(clean_path)]
    args += ["--report", str(report_path), *case.extra]
    if case.id:
        args += ["--id", case.id]
    proc = _medimg(python, code, home, args)
    if proc.returncode != 0:
        out.add(f"  clean: FAILED: {_error_text(proc)}")
        return
    report = json.loads(report_path.read_text(encoding="utf-8"))
    kept = pd.read_parquet(clean_path)
    rows_in = report.get("rows_in")
    out.add(
        f"  clean: rows in {_num(rows_in)}, kept {_num(report.get('rows_kept'))}, "
        f"removed {_num(report.get('rows_removed'))}"
    )
    by_rule = {k: v for k, v in (report.get("removed_by_rule") or {}).items() if v}
    out.add(f"    removed per rule: {by_rule or 'none'}")
    for key, value in report.items():
        if key in ("removed_by_rule", "plan", "notes", "dataset", "roles"):
            continue
        if isinstance(value, dict) and value and "class" in key.lower():
            out.add(f"    {key}: {_short(value)}")
    if frame is not None and case.label in frame.columns and case.label in kept.columns:
        before = _class_counts(frame[case.label])
        after = _class_counts(kept[case.label])
        removed = {k: before.get(k, 0) - after.get(k, 0) for k in before}
        out.add(f"    classes before: {_counts_text(before)}; after: {_counts_text(after)}")
        out.add(f"    removed per class (all rules): {_counts_text(removed)}")
        out.add(
            f"    prevalence of {case.positive_name}: before {_prevalence(before, case.positive)}"
            f" -> after {_prevalence(after, case.positive)}"
        )
    conflicts = report.get("conflicts")
    if conflicts:
        shown = conflicts if isinstance(conflicts, int | float | str) else _short(conflicts)
        out.add(f"    conflicts (same features, different labels): {shown}")
    if frame is not None:
        out.conflicts = _conflict_rows(frame, case)
        out.add(f"    rows in label-conflict groups (complete rows): {len(out.conflicts)}")
    flagged = report.get("flagged_cells")
    if flagged:
        out.add(f"    flagged cells (kept): {flagged}")
    for note in report.get("notes") or []:
        out.add(f"    note: {note}")
    for key in ("warnings", "duplicate_candidates", "missingness"):
        if report.get(key):
            out.add(f"    {key}: {_short(report[key])}")


def _train_step(
    case: Case, python: str, code: Path, home: Path, work: Path, n_boot: int, out: Outcome
) -> None:
    model_dir = work / "model"
    args = [
        "train",
        case.data,
        "--label",
        case.label,
        "--n-boot",
        str(n_boot),
        "-o",
        str(model_dir),
        *case.extra,
    ]
    if case.positive is not None:
        args += ["--positive", case.positive]
    if case.id:
        args += ["--id", case.id]
    if case.image:
        args += ["--workers", "2"]
    help_text = _train_help(python, code, home)
    for option in case.if_supported:
        if option[0] in help_text:
            args += list(option)
    shown = [a for a in args[2:] if a not in ("-o", str(model_dir))]
    out.add(f"  medimg train DATA {' '.join(shown)}")
    start = time.perf_counter()
    proc = _medimg(python, code, home, args)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 and case.positive is not None and case.fallback_positive:
        # A version that names the classes (0 -> malignant) may want the name instead.
        out.add(f"  train with --positive {case.positive}: FAILED: {_error_text(proc)}")
        out.add(f"  retrying with --positive {case.fallback_positive}")
        args[args.index("--positive") + 1] = case.fallback_positive
        proc = _medimg(python, code, home, args)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        out.add(f"  train: FAILED after {seconds:.0f} s: {_error_text(proc)}")
        return
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    out.card = card
    ds = card.get("dataset") or {}
    out.add(
        f"  train ({seconds:.0f} s): rows in {_num(ds.get('rows_in'))}, used "
        f"{_num(ds.get('rows_used'))}, classes used {_counts_text(ds.get('classes') or {})}"
    )
    by_rule = {k: v for k, v in (ds.get("removed_by_rule") or {}).items() if v}
    out.add(f"    removed per rule (train's cleaning): {by_rule or 'none'}")
    classes = {str(k): int(v) for k, v in (ds.get("classes") or {}).items()}
    positive = card.get("positive_class")
    out.add(
        f"    positive class: {_num(positive)} (asked for {case.positive_name}); prevalence "
        f"used {_prevalence(classes, str(positive))}"
    )
    chosen = next((r for r in card.get("leaderboard") or [] if r.get("chosen")), None)
    kind = _get(card, "pipeline", "kind")
    out.add(f"    chosen model: {_num(kind)}")
    cv, test = _get(card, "metrics", "cv") or {}, _get(card, "metrics", "test") or {}
    out.add(f"    CV AUC (headline): {_metric(cv.get('roc_auc'))}")
    if chosen is not None:
        out.add(f"    CV AUC (leaderboard, chosen): {_metric(chosen.get('roc_auc'))}")
    out.add(f"    CV AUC (selection-free): {_metric(_find_metric(card, _SELECTION_FREE))}")
    val = card.get("validation") or {}
    n_test = val.get("n_test_evaluated", val.get("n_test"))
    out.add(
        f"    split: {_num(val.get('n_dev'))} dev / {_num(val.get('n_test'))} test "
        f"({_num(val.get('level'))}); test n evaluated {_num(n_test)}; "
        f"ids in both {_num(val.get('ids_in_both_splits'))}, identical rows across "
        f"{_num(val.get('identical_rows_across_splits'))}"
    )
    out.add(f"    test AUC: {_metric(test.get('roc_auc'))}")
    out.add(
        f"    sensitivity for {_num(positive)}: CV {_metric(cv.get('sensitivity'))}; "
        f"test {_metric(test.get('sensitivity'))}"
    )
    out.add(
        f"    specificity: CV {_metric(cv.get('specificity'))}; "
        f"test {_metric(test.get('specificity'))}"
    )
    out.add(f"    threshold: {_num(_get(card, 'threshold', 'value'))}")
    for line in _extra_card_figures(card):
        out.add(f"    card: {line}")
    warnings = card.get("warnings") or []
    out.add(f"    warnings ({len(warnings)}):" if warnings else "    warnings: none")
    for w in warnings:
        out.add(f"      - {w}")
    for note in _stderr_notes(proc):
        out.add(f"    cli note: {note}")
    if by_rule.get("conflicting duplicate") and out.conflicts is not None:
        _hard_cases(case, python, code, home, work, n_boot, out, model_dir)


_MIN_HARD_CASES = 20
"""Fewer conflict rows than this give no useful AUC (the Wisconsin mimic has one pair)."""


def _hard_cases(
    case: Case,
    python: str,
    code: Path,
    home: Path,
    work: Path,
    n_boot: int,
    out: Outcome,
    model_dir: Path,
) -> None:
    """Score the label-conflict rows the cleaning removed with the trained model (no refit).

    Only run when training removed them, so they are cases the model never saw: how well it
    does on the cases the cleaning hid from the reported figures.
    """
    rows = out.conflicts
    if rows is None or len(rows) < _MIN_HARD_CASES or rows[case.label].nunique() < 2:
        return
    path = work / "conflict_rows.csv"
    rows.to_csv(path, index=False)
    metrics_path = work / "conflict_metrics.json"
    args = ["evaluate", str(model_dir), str(path), "--n-boot", str(n_boot)]
    proc = _medimg(python, code, home, [*args, "--json", str(metrics_path)])
    if proc.returncode != 0:
        out.add(f"    AUC on the removed conflict rows: FAILED: {_error_text(proc)}")
        return
    result = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics = result.get("metrics") or {}
    out.add(
        f"    AUC on the {result.get('n', len(rows))} removed conflict rows (unseen): "
        f"{_metric(metrics.get('roc_auc'))}; sensitivity {_metric(metrics.get('sensitivity'))}"
    )


def run_case(case: Case, python: str, code: Path, home: Path, work: Path, n_boot: int) -> Outcome:
    out = Outcome()
    out.add(f"== {case.name}" + (f"  [{case.note}]" if case.note else ""))
    work.mkdir(parents=True, exist_ok=True)
    if not case.image:
        _clean_step(case, python, code, home, work, out)
    _train_step(case, python, code, home, work, n_boot, out)
    return out


def selection_optimism(
    python: str, code: Path, home: Path, work: Path, n_boot: int, reps: int
) -> list[str]:
    """``auto`` on ``reps`` no-signal tables: mean chosen CV AUC, share of CIs excluding 0.5."""
    rows = []
    work.mkdir(parents=True, exist_ok=True)
    for seed in range(100, 100 + reps):
        path = datasets.no_signal(work, seed, name=f"no_signal_{seed}.csv")
        case = Case(f"no_signal_{seed}", str(path), "outcome", "1", "1")
        out = Outcome()
        _train_step(case, python, code, home, work / f"ns{seed}", n_boot, out)
        card = out.card
        if card is None:
            rows.append((seed, None, None, None, out.lines[-1].strip()))
            continue
        chosen = next((r for r in card.get("leaderboard") or [] if r.get("chosen")), None)
        headline = _get(card, "metrics", "cv", "roc_auc")
        free = _find_metric(card, _SELECTION_FREE)
        rows.append((seed, headline, chosen, free, _get(card, "pipeline", "kind")))
    lines = [f"== selection optimism of `auto` on {reps} no-signal tables (300 rows, 10 noise)"]
    heads = [r[1]["value"] for r in rows if isinstance(r[1], dict) and r[1].get("value")]
    for seed, headline, chosen, free, kind in rows:
        extra = f"; selection-free {_metric(free)}" if free is not None else ""
        lines.append(
            f"  seed {seed}: {kind}, CV AUC {_metric(headline)}"
            f"{'' if chosen is None else ', leaderboard ' + _metric(chosen.get('roc_auc'))}"
            f"{extra}"
        )
    if heads:
        excl = [_excludes_half(r[1]) for r in rows if isinstance(r[1], dict)]
        lines.append(
            f"  mean CV AUC of the chosen model {np.mean(heads):.3f} (n={len(heads)}); "
            f"95% CI excludes 0.5 in {sum(bool(e) for e in excl)}/{len(excl)}"
        )
    frees = [r[3] for r in rows if isinstance(r[3], dict) and r[3].get("value") is not None]
    if frees:
        excl = [_excludes_half(f) for f in frees]
        lines.append(
            f"  mean selection-free CV AUC {np.mean([f['value'] for f in frees]):.3f} "
            f"(n={len(frees)}); 95% CI excludes 0.5 in {sum(bool(e) for e in excl)}/{len(excl)}"
        )
    else:
        lines.append("  selection-free CV AUC: n/a (not in the model card)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="issue-8 honesty benchmark")
    parser.add_argument(
        "--code", type=Path, default=REPO, help="folder holding medimg_core (PYTHONPATH)"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter to run medimg")
    parser.add_argument("--out", type=Path, action="append", default=[], help="also write here")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these data sets")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--no-signal-reps", type=int, default=0)
    parser.add_argument("--pneumonia", type=Path, default=datasets.PNEUMONIA_NPZ)
    parser.add_argument("--keep", type=Path, help="keep data and models in this folder")
    args = parser.parse_args(argv)

    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="medimg-honesty-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        home, data_dir = root / "workspace", root / "data"
        home.mkdir(parents=True, exist_ok=True)
        commit = subprocess.run(
            ["git", "-C", str(code), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        version = _medimg(args.python, code, home, ["--version"]).stdout.strip()
        header = [
            f"medimg honesty benchmark (issue 8): code {code} ({commit or 'no git'}), {version}",
            f"n_boot {args.n_boot}, default folds and seed; date {time.strftime('%Y-%m-%d %H:%M')}",
            "",
        ]
        print("\n".join(header), flush=True)
        lines = list(header)
        started = time.perf_counter()
        for case in cases(data_dir, pneumonia=args.pneumonia):
            if args.only and case.name not in args.only:
                continue
            outcome = run_case(case, args.python, code, home, root / case.name, args.n_boot)
            outcome.add()
            print("\n".join(outcome.lines), flush=True)
            lines.extend(outcome.lines)
        if args.no_signal_reps > 0 and (not args.only or "no_signal" in args.only):
            block = selection_optimism(
                args.python, code, home, root / "optimism", args.n_boot, args.no_signal_reps
            )
            block.append("")
            print("\n".join(block), flush=True)
            lines.extend(block)
        tail = f"total {time.perf_counter() - started:.0f} s"
        print(tail)
        lines.append(tail)
    for path in args.out:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
