"""The SMART app's plots, drawn by matplotlib as SVG and embedded as ``data:`` images.

Server-side drawing keeps the page free of scripts (the Content-Security-Policy allows
none), prints as it shows, and uses a well-kept plotting library rather than hand-drawn
SVG. Every plot is followed on the page by a table of the same values (its text
alternative). matplotlib is imported on first use, so hook-only workers never load it.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from fhir_mappings import TherapyPeriod

from .overview import Overview, Point

THERAPY_COLOURS = {"a1pi": "#9ecae1", "immune_globulin": "#fdd0a2"}
THERAPY_LABELS = {"a1pi": "A1PI augmentation", "immune_globulin": "immunoglobulin replacement"}
_LOCK = threading.Lock()  # pyplot keeps global state; one figure at a time per worker


def plots(view: Overview) -> dict[str, str]:
    """``data:`` URIs of the plots that have data, by name."""
    every = [*view.aat, *view.fev1_percent, *view.weights, *view.igg]
    if not every and not view.periods:
        return {}
    span = _span(every, view.periods, view.as_of)
    protective = (view.protective_umol_l, f"{view.protective_umol_l:g} µmol/L")
    with _LOCK:
        drawn = {
            "aat": _plot(view, span, view.aat, "AAT level (µmol/L)", line=protective),
            "fev1": _plot(view, span, view.fev1_percent, "FEV1 % predicted", band=_window(view)),
            "weight": _plot(view, span, view.weights, "Body weight (kg)"),
            "igg": _plot(view, span, view.igg, "IgG (mg/dL)"),
        }
    return {name: uri for name, uri in drawn.items() if uri}


def _window(view: Overview) -> tuple[float, float, str] | None:
    window = view.window
    if window is None:
        return None
    return window.lower, window.recommend_max, f"{window.label}: augmentation window"


def _plot(
    view: Overview,
    span: tuple[date, date],
    points: Sequence[Point],
    label: str,
    line: tuple[float, str] | None = None,
    band: tuple[float, float, str] | None = None,
) -> str | None:
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.dates import date2num

    figure, axes = pyplot.subplots(figsize=(7.5, 2.6), dpi=96)
    try:
        start, end = span
        axes.xaxis_date()
        _shade_periods(axes, view.periods, view.as_of, date2num)
        if band is not None:
            axes.axhspan(band[0], band[1], color="#e5f5e0", zorder=0, label=band[2])
        if line is not None:
            axes.axhline(line[0], color="#c0392b", linestyle="--", linewidth=1, label=line[1])
        x = [date2num(p.when) for p in points]
        axes.plot(x, [p.value for p in points], marker="o", color="#08519c")
        axes.set_xlim(date2num(start), date2num(end))
        axes.set_ylabel(label)
        axes.grid(True, linewidth=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="small", frameon=False)
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        pyplot.close(figure)
    encoded = base64.b64encode(buffer.getvalue().encode()).decode()
    return f"data:image/svg+xml;base64,{encoded}"


def _span(
    points: Sequence[Point], periods: Sequence[TherapyPeriod], as_of: date
) -> tuple[date, date]:
    """One time axis for every plot: from the first value or therapy to today."""
    starts = [p.when for p in points] + [p.start for p in periods]
    return min(starts) - timedelta(days=60), as_of + timedelta(days=30)


def _shade_periods(
    axes: Any, periods: Sequence[TherapyPeriod], today: date, to_x: Callable[[date], float]
) -> None:
    labelled: set[str] = set()
    for period in periods:
        end = period.end or today
        if end <= period.start:
            end = period.start + timedelta(days=7)
        label = None if period.product in labelled else THERAPY_LABELS[period.product]
        labelled.add(period.product)
        axes.axvspan(
            to_x(period.start),
            to_x(end),
            color=THERAPY_COLOURS[period.product],
            alpha=0.6,
            label=label,
        )
