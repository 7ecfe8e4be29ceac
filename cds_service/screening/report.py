"""The screen's report: one self-contained HTML page of counts and plots, naming no one.

Counts per worklist; the share of living COPD or emphysema patients ever tested for AATD
(a level, a genotype or a phenotype on record); the testing gap by age group and by the
year COPD was first recorded (is testing catching up with new diagnoses?). Plots are SVG
drawn by matplotlib (as the SMART app's), embedded, with a table of the same numbers.
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


def html_report(tally: Tally, filed: Filed, as_of: date) -> str:
    share = f"{tally.copd_tested / tally.copd:.0%}" if tally.copd else "no COPD patients"
    ages = sorted(tally.by_age.items(), key=lambda kv: (kv[0] == "unknown", kv[0]))
    years = sorted(tally.by_year.items())
    plots = []
    if ages:
        tested = [t for _, (_, t) in ages]
        untested = [n - t for _, (n, t) in ages]
        svg = _bars([band for band, _ in ages], tested, untested, "Age group")
        plots.append({"svg": svg, "alt": "COPD patients tested and untested by age group"})
    if years:
        svg = _share([y for y, _ in years], [t / n for _, (n, t) in years])
        plots.append({"svg": svg, "alt": "Share tested by the year COPD was first recorded"})
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
        years=years,
    )


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


def _share(years: list[int], shares: list[float]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 2.8), dpi=96, layout="constrained")
    axes = figure.subplots()
    axes.plot(years, [s * 100 for s in shares], marker="o", color="#08519c")
    axes.set_ylim(0, 100)
    axes.set_xlabel("Year COPD was first recorded")
    axes.set_ylabel("% tested")
    return _svg(figure)


def _svg(figure: object) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})  # type: ignore[attr-defined]
    return base64.b64encode(buffer.getvalue().encode()).decode()
