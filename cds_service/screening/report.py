"""The screen's report: one self-contained HTML page of counts and plots, naming no one.

Counts per worklist; the share of living COPD or emphysema patients ever tested for AATD
(a level, a genotype or a phenotype on record); the testing gap by age group and by the
five years in which COPD was first recorded (is testing catching up with new diagnoses?).
Both are counts of tested and never-tested patients, not shares: a share of one or two
patients a year swings between 0 and 100 % and reads as a trend. Plots are SVG drawn by
matplotlib (as the SMART app's), embedded, with a table of the same numbers.
"""

from __future__ import annotations

import base64
import io
from datetime import date
from typing import TYPE_CHECKING

from ..html_pages import render_page
from .export import Filed
from .worklists import CATEGORIES

if TYPE_CHECKING:
    from .run import Tally


PERIOD = 5  # years of first COPD record per bar


def html_report(tally: Tally, filed: Filed, as_of: date) -> str:
    share = f"{tally.copd_tested / tally.copd:.0%}" if tally.copd else "no COPD patients"
    ages = sorted(tally.by_age.items(), key=lambda kv: (kv[0] == "unknown", kv[0]))
    periods = _periods(tally.by_year, as_of.year)
    plots = []
    for rows, axis, alt in (
        (ages, "Age group", "COPD patients tested and never tested by age group"),
        (
            periods,
            "COPD first recorded",
            "COPD patients tested and never tested by when COPD was first recorded",
        ),
    ):
        if rows:
            tested = [t for _, (_, t) in rows]
            untested = [n - t for _, (n, t) in rows]
            plots.append({"svg": _bars([k for k, _ in rows], tested, untested, axis), "alt": alt})
    return render_page(
        "screen_report.html",
        as_of=as_of,
        filed=filed,
        resources=sum(filed.resources.values()),
        share=share,
        tally=tally,
        categories=CATEGORIES,
        plots=plots,
        ages=ages,
        periods=periods,
    )


def _periods(by_year: dict[int, list[int]], last: int) -> list[tuple[str, list[int]]]:
    """Per-year counts summed into PERIOD-year spans ("2015-19"; the latest ends at
    ``last``, the report's year), oldest first."""
    spans: dict[int, list[int]] = {}
    for year, (patients, tested) in by_year.items():
        counts = spans.setdefault(year // PERIOD * PERIOD, [0, 0])
        counts[0] += patients
        counts[1] += tested
    return [  # "2015-19": short enough for eight bars side by side to stay legible
        (f"{start}-{min(start + PERIOD - 1, last) % 100:02d}", spans[start])
        for start in sorted(spans)
    ]


def _bars(labels: list[str], tested: list[int], untested: list[int], axis: str) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 2.8), dpi=96, layout="constrained")
    axes = figure.subplots()
    axes.bar(labels, tested, color="#2e7d32", label="tested")
    axes.bar(labels, untested, bottom=tested, color="#ef6c00", label="never tested")
    axes.set_xlabel(axis)
    axes.set_ylabel("COPD patients")
    axes.legend(frameon=False)
    return _svg(figure)


def _svg(figure: object) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})  # type: ignore[attr-defined]
    return base64.b64encode(buffer.getvalue().encode()).decode()
