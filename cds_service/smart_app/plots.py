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
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fhir_mappings import TherapyPeriod
from hooks.knowledge import thresholds

from .overview import Overview, Point

THERAPY_COLOURS = {"a1pi": "#9ecae1", "immune_globulin": "#fdd0a2"}
THERAPY_LABELS = {"a1pi": "A1PI augmentation", "immune_globulin": "immunoglobulin replacement"}
_LOCK = threading.Lock()  # pyplot keeps global state; one figure at a time per worker
# Drawn about 400 px wide with 9 pt text, so that on a 390 px phone screen the plot is shown
# near its own size and the text stays readable; wider screens scale the SVG up (CSS).
FIGURE_INCHES = (4.2, 2.8)
FONT_POINTS = 9


@dataclass(frozen=True, slots=True)
class Line:
    """A horizontal reference line: a threshold the values are read against."""

    value: float
    label: str
    style: str = "--"


@dataclass(frozen=True, slots=True)
class Scale:
    """What a plot's value axis shows: its label, reference lines, a shaded band, and a
    range wide enough that a small change does not look large (``floor``: the axis starts
    here unless a value is lower; ``min_span``: the axis covers at least this much)."""

    label: str
    lines: tuple[Line, ...] = ()
    band: tuple[float, float, str] | None = None
    floor: float | None = 0.0
    min_span: float = 0.0


def plots(view: Overview) -> dict[str, str]:
    """``data:`` URIs of the plots that have data, by name."""
    every = [*view.aat, *view.fev1_percent, *view.weights, *view.igg]
    if not every and not view.periods:
        return {}
    span = _span(every, view.periods, view.as_of)
    limits = thresholds()
    protective = Line(view.protective_umol_l, f"protective {view.protective_umol_l:g} µmol/L")
    trough = Line(
        limits.igg_trough_target_mg_dl, f"trough target {limits.igg_trough_target_mg_dl:g}"
    )
    ideal = Line(limits.igg_trough_ideal_mg_dl, f"ideal {limits.igg_trough_ideal_mg_dl:g}", ":")
    scales = {
        "aat": (view.aat, Scale("AAT (µmol/L)", lines=(protective,))),
        "fev1": (view.fev1_percent, Scale("FEV1 % predicted", band=_window(view), min_span=100)),
        # A weight axis from 0 would flatten every change; 20 kg keeps 3 kg looking like 3 kg.
        "weight": (view.weights, Scale("Weight (kg)", floor=None, min_span=20)),
        "igg": (view.igg, Scale("IgG (mg/dL)", lines=(trough, ideal))),
    }
    with _LOCK:
        drawn = {name: _plot(view, span, points, scale) for name, (points, scale) in scales.items()}
    return {name: uri for name, uri in drawn.items() if uri}


def _window(view: Overview) -> tuple[float, float, str] | None:
    window = view.window
    if window is None:
        return None
    low, high = window.lower, window.recommend_max
    return low, high, f"augmentation window {low:g}-{high:g} %"


def _plot(
    view: Overview, span: tuple[date, date], points: Sequence[Point], scale: Scale
) -> str | None:
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num

    with pyplot.rc_context({"font.size": FONT_POINTS}):
        # "constrained" makes room for the legend outside the axes and the date labels.
        figure, axes = pyplot.subplots(figsize=FIGURE_INCHES, dpi=96, layout="constrained")
        try:
            start, end = span
            locator = AutoDateLocator(minticks=3, maxticks=6)
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
            _shade_periods(axes, view.periods, view.as_of, date2num)
            _references(axes, scale)
            x = [date2num(p.when) for p in points]
            axes.plot(x, [p.value for p in points], marker="o", markersize=4, color="#08519c")
            axes.set_xlim(date2num(start), date2num(end))
            axes.set_ylim(*_value_range([p.value for p in points], scale))
            axes.set_ylabel(scale.label)
            axes.grid(True, linewidth=0.3)
            if axes.get_legend_handles_labels()[0]:
                # Above the plot, never over the values, one entry per line.
                figure.legend(loc="outside upper left", frameon=False, fontsize=FONT_POINTS - 1)
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None})
        finally:
            pyplot.close(figure)
    encoded = base64.b64encode(buffer.getvalue().encode()).decode()
    return f"data:image/svg+xml;base64,{encoded}"


def _references(axes: Any, scale: Scale) -> None:
    """The band between its bounds only (edged, so it reads as a range, not a background)
    and the threshold lines."""
    if scale.band is not None:
        low, high, label = scale.band
        axes.axhspan(low, high, facecolor="#c7e9c0", edgecolor="#41ab5d", zorder=0, label=label)
    for line in scale.lines:
        axes.axhline(
            line.value, color="#c0392b", linestyle=line.style, linewidth=1, label=line.label
        )


def _value_range(values: Sequence[float], scale: Scale) -> tuple[float, float]:
    """From the floor (or the lowest value, less a margin) to the highest value, band or
    line, covering at least ``min_span``."""
    marks = [*values, *(line.value for line in scale.lines)]
    if scale.band is not None:
        marks += [scale.band[0], scale.band[1]]
    top, bottom = max(marks), min(marks)
    margin = max((top - bottom) * 0.1, 1.0)
    low = min(scale.floor, bottom) if scale.floor is not None else bottom - margin
    high = top + margin
    if high - low < scale.min_span:
        extra = scale.min_span - (high - low)
        low, high = (
            (low, high + extra) if scale.floor is not None else (low - extra / 2, high + extra / 2)
        )
    if low < 0 <= bottom:  # no value is negative: neither is the axis
        low, high = 0.0, high - low
    return low, high


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
