"""Server work of one threshold-slider move on the Evaluate page: figures built and serialised.

What a move costs the server, besides Streamlit's own element bookkeeping: the confusion counts
at the new threshold, the figures the fragment redraws (one confusion matrix carrying counts and
shares, and the trade-off curves with their threshold line), and the marshalling
``st.plotly_chart`` does for each (``plotly.tools.return_figure_from_figure_or_data`` then
``plotly.io.to_json``, copied here so no Streamlit session is needed).

Baseline, measured in the same process, interleaved: the same figures built the ordinary plotly
way (``go.Figure(go.Heatmap(...))``, ``update_layout``, ``add_vline``, all validated, the
``plotly_white`` template), which is how the page built them before issue 13, plus the second
(share) matrix it drew then. It is fair to plotly as most code uses it; plotly itself offers no
faster documented route than unvalidated dicts, which is what medimg now does (a unit test
validates the result). The end-to-end target (slider ≤ 150 ms median in a browser, fewer and
smaller messages) is measured by ``bench_app.py --only slider``; this script shows the server's
share of it.

Run: ``python benchmarks/bench_threshold.py [--rows N] [--rounds N]``. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import plotly.tools
from _common import load_line

from medimg_core.modelling.evaluation import Evaluation, confusion_at, evaluate_scores
from medimg_core.reporting.figures.evaluation import confusion_figure, threshold_figure


def shipped(fig: go.Figure) -> int:
    """What ``st.plotly_chart`` does with a figure; returns the bytes of the spec it sends."""
    figure = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
    return len(pio.to_json(figure, validate=False))


def medimg_move(ev: Evaluation, t: float) -> int:
    now = confusion_at(ev, t)
    matrix = confusion_figure(
        now.confusion, ev.class_names, normalize=True, title=f"Counts at {t:.2f}, with shares"
    )
    return shipped(matrix) + shipped(threshold_figure(ev, threshold=t))


def plain_matrix(counts: np.ndarray, names: list[str], normalize: bool, title: str) -> go.Figure:
    shares = counts / counts.sum(axis=1, keepdims=True)
    text = [
        [f"{c:,}" + (f"<br>{s:.1%}" if normalize else "") for c, s in zip(rc, rs, strict=True)]
        for rc, rs in zip(counts, shares, strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=shares if normalize else counts,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
        )
    )
    fig.update_layout(template="plotly_white", title=title, height=380, margin={"t": 48})
    fig.update_xaxes(type="category", title="Predicted")
    fig.update_yaxes(type="category", autorange="reversed", title="True diagnosis")
    return fig


def plain_move(ev: Evaluation, t: float) -> int:
    y, p = np.asarray(ev.y_true), np.asarray(ev.y_score)
    called = p >= t
    counts = np.array(
        [
            [np.sum(~called & (y == 0)), np.sum(called & (y == 0))],
            [np.sum(~called & (y == 1)), np.sum(called & (y == 1))],
        ]
    )
    names = [str(c) for c in ev.class_names]
    size = shipped(plain_matrix(counts, names, False, f"Counts at {t:.2f}"))
    size += shipped(plain_matrix(counts, names, True, f"Share at {t:.2f}"))
    grid = np.linspace(0, 1, 101)
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    tp = len(pos) - np.searchsorted(pos, grid)
    tn = np.searchsorted(neg, grid)
    fig = go.Figure()
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, values in (
            ("Sensitivity", tp / len(pos)),
            ("Specificity", tn / len(neg)),
            ("PPV", tp / (tp + len(neg) - tn)),
            ("NPV", tn / (tn + len(pos) - tp)),
        ):
            fig.add_trace(go.Scatter(x=grid, y=values, mode="lines", name=name))
    fig.add_vline(x=t, line_dash="dot", annotation_text=f"threshold {t:.2f}")
    fig.update_layout(template="plotly_white", title="Trade-off", height=420, hovermode="x unified")
    return size + shipped(fig)


def timed(fn: Callable[[Evaluation, float], int], ev: Evaluation, t: float) -> tuple[float, int]:
    start = time.perf_counter()
    size = fn(ev, t)
    return (time.perf_counter() - start) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="cases on the slider")
    parser.add_argument("--rounds", type=int, default=30, help="moves timed, interleaved")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = (rng.random(args.rows) < 0.35).astype(int)
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, args.rows), 0, 1)
    ev = evaluate_scores(
        y, p, class_names=["benign", "malignant"], positive_class=1, n_boot=50, partition="cv"
    )
    medimg_move(ev, 0.5), plain_move(ev, 0.5)  # warm caches and imports
    ours, plain, ours_bytes, plain_bytes = [], [], 0, 0
    for i in range(args.rounds):
        t = 0.30 + 0.01 * (i % 40)
        ms, ours_bytes = timed(medimg_move, ev, t)
        ours.append(ms)
        ms, plain_bytes = timed(plain_move, ev, t)
        plain.append(ms)
    a, b = statistics.median(ours), statistics.median(plain)
    print(f"threshold slider, server work per move, {args.rows:,} cases, {args.rounds} moves")
    print(load_line())
    print(
        f"  medimg (1 matrix + trade-off, unvalidated): {a:7.1f} ms median, {ours_bytes:,} B of figure specs"
    )
    print(
        f"  plain plotly, validated (3 figures, as before): {b:7.1f} ms median, {plain_bytes:,} B"
    )
    print(f"  ratio plain / medimg: {b / a:.1f}x (medimg is that many times faster)")
    print(
        f"  target: slider ≤ 150 ms median end to end (bench_app.py --only slider); "
        f"server figure work here {a:.1f} ms = {a / 150:.0%} of it"
    )


if __name__ == "__main__":
    main()
