"""``alpha1-cds feedback-report``: what clinicians do with each kind of card.

Per topic and indicator: cards issued, accepted, overridden and never answered, with the
rates; the most common override reasons; feedback for cards this service never issued;
and the cards decided silently (silent mode: recorded, not shown), per topic and day, what
a CDS committee reads before switching a topic on.
A card's outcome is its latest feedback. Text for a terminal, JSON for tools, HTML with a
chart for a clinical lead.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from .store import CARDS, FEEDBACK


@dataclass(frozen=True, slots=True)
class TopicRow:
    topic: str
    indicator: str
    issued: int
    accepted: int
    overridden: int

    @property
    def unanswered(self) -> int:
        return self.issued - self.accepted - self.overridden

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.issued if self.issued else 0.0

    @property
    def override_rate(self) -> float:
        return self.overridden / self.issued if self.issued else 0.0


@dataclass(slots=True)
class Report:
    since: date | None
    generated_at: datetime
    rows: list[TopicRow] = field(default_factory=list)
    reasons: list[tuple[str, int]] = field(default_factory=list)
    unknown_feedback: int = 0
    # Silent cards: (day, topic) -> how many would have fired.
    silent: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def never_answered(self) -> int:
        return sum(row.unanswered for row in self.rows)


def build(engine: sa.Engine, since: date | None = None, top: int = 10) -> Report:
    start = datetime.combine(since, datetime.min.time(), UTC) if since else None
    with engine.connect() as connection:
        cards_query = sa.select(
            CARDS.c.card_uuid, CARDS.c.topic, CARDS.c.indicator, CARDS.c.shown, CARDS.c.issued_at
        )
        if start is not None:
            cards_query = cards_query.where(CARDS.c.issued_at >= start)
        cards, silent = {}, Counter[tuple[str, str]]()
        for uuid, topic, indicator, shown, issued_at in connection.execute(cards_query):
            if shown is False:  # NULL: a row from before silent mode, which was shown
                silent[(issued_at.date().isoformat(), topic)] += 1
            else:
                cards[uuid] = (topic, indicator)
        feedback = connection.execute(
            sa.select(
                FEEDBACK.c.card_uuid,
                FEEDBACK.c.outcome,
                FEEDBACK.c.outcome_timestamp,
                FEEDBACK.c.override_code,
                FEEDBACK.c.override_display,
                FEEDBACK.c.user_comment,
            ).order_by(FEEDBACK.c.outcome_timestamp)
        ).all()
    latest = {row.card_uuid: row for row in feedback}  # ordered by time: the last one wins
    report = Report(since=since, generated_at=datetime.now(UTC))
    report.silent = [(day, topic, n) for (day, topic), n in sorted(silent.items())]
    report.unknown_feedback = sum(1 for uuid in latest if uuid not in cards and start is None)
    issued: Counter[tuple[str, str]] = Counter(cards.values())
    outcomes: Counter[tuple[str, str, str]] = Counter(
        (*cards[uuid], row.outcome) for uuid, row in latest.items() if uuid in cards
    )
    report.rows = sorted(
        (
            TopicRow(
                topic,
                indicator,
                count,
                outcomes[(topic, indicator, "accepted")],
                outcomes[(topic, indicator, "overridden")],
            )
            for (topic, indicator), count in issued.items()
        ),
        key=lambda row: (-row.issued, row.topic, row.indicator),
    )
    reasons = Counter(
        _reason(row)
        for uuid, row in latest.items()
        if uuid in cards and row.outcome == "overridden"
    )
    report.reasons = reasons.most_common(top)
    return report


def _reason(row: Any) -> str:
    if row.override_display or row.override_code:
        return row.override_display or row.override_code
    return "(comment only)" if row.user_comment else "(no reason given)"


def as_json(report: Report) -> str:
    return json.dumps(
        {
            "since": report.since.isoformat() if report.since else None,
            "generatedAt": report.generated_at.isoformat(timespec="seconds"),
            "topics": [
                {
                    **asdict(row),
                    "unanswered": row.unanswered,
                    "acceptanceRate": round(row.acceptance_rate, 4),
                    "overrideRate": round(row.override_rate, 4),
                }
                for row in report.rows
            ],
            "overrideReasons": [{"reason": r, "count": n} for r, n in report.reasons],
            "silent": [{"day": d, "topic": t, "wouldHaveFired": n} for d, t, n in report.silent],
            "neverAnswered": report.never_answered,
            "feedbackForUnknownCards": report.unknown_feedback,
        },
        indent=2,
    )


def as_text(report: Report) -> str:
    period = f"since {report.since}" if report.since else "all time"
    lines = [f"alpha1-cds feedback report ({period})", ""]
    header = f"{'topic':42} {'indicator':9} {'issued':>7} {'accept':>7} {'override':>8} {'none':>6}"
    lines += [header, "-" * len(header)]
    for row in report.rows:
        lines.append(
            f"{row.topic:42} {row.indicator:9} {row.issued:>7} {_pct(row.acceptance_rate):>7} "
            f"{_pct(row.override_rate):>8} {row.unanswered:>6}"
        )
    lines += ["", "Top override reasons:"]
    lines += [f"  {count:>5}  {reason}" for reason, count in report.reasons] or ["  (none)"]
    lines += [
        "",
        f"Cards never answered: {report.never_answered}",
        f"Feedback for cards not issued here: {report.unknown_feedback}",
    ]
    if report.silent:
        lines += ["", "Silent (decided and recorded, not shown): would have fired"]
        lines += [f"  {day}  {topic:42} {n:>6}" for day, topic, n in report.silent]
    return "\n".join(lines)


def _pct(rate: float) -> str:
    return f"{rate * 100:.0f}%"


BAR_WIDTH = 420
COLOURS = {"accepted": "#2e7d32", "overridden": "#ef6c00", "unanswered": "#b0bec5"}


def as_html(report: Report) -> str:
    """A self-contained page: a stacked bar per topic and the override reasons."""
    period = f"since {report.since}" if report.since else "all time"
    bars = "\n".join(_bar(row, index) for index, row in enumerate(report.rows))
    height = 30 * len(report.rows) + 10
    rows = "\n".join(
        f"<tr><td>{html.escape(row.topic)}</td><td>{html.escape(row.indicator)}</td>"
        f"<td>{row.issued}</td><td>{_pct(row.acceptance_rate)}</td>"
        f"<td>{_pct(row.override_rate)}</td><td>{row.unanswered}</td></tr>"
        for row in report.rows
    )
    reasons = "\n".join(
        f"<li>{html.escape(reason)}: {count}</li>" for reason, count in report.reasons
    )
    legend = " ".join(
        f'<span style="color:{colour}">&#9632; {name}</span>' for name, colour in COLOURS.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>alpha1-cds feedback report</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
svg text{{font-size:12px}}</style></head>
<body>
<h1>What clinicians do with alpha1-cds cards</h1>
<p>Period: {html.escape(period)}. Generated {report.generated_at:%Y-%m-%d %H:%M} UTC.</p>
<h2>Outcome by topic</h2>
<p>{legend}</p>
<svg role="img" aria-label="Outcome of cards by topic" width="{BAR_WIDTH + 330}" height="{height}">
{bars}
</svg>
<table id="topics"><thead><tr><th>Topic</th><th>Indicator</th><th>Issued</th><th>Accepted</th>
<th>Overridden</th><th>Never answered</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Top override reasons</h2>
<ol id="reasons">
{reasons or "<li>(none)</li>"}
</ol>
<p>Cards never answered: {report.never_answered}.
Feedback for cards not issued here: {report.unknown_feedback}.</p>
{_silent_table(report)}
</body></html>
"""


def _silent_table(report: Report) -> str:
    if not report.silent:
        return ""
    rows = "\n".join(
        f"<tr><td>{day}</td><td>{html.escape(topic)}</td><td>{n}</td></tr>"
        for day, topic, n in report.silent
    )
    return f"""<h2>Silent: would have fired</h2>
<table id="silent"><thead><tr><th>Day</th><th>Topic</th><th>Cards</th></tr></thead>
<tbody>
{rows}
</tbody></table>"""


def _bar(row: TopicRow, index: int) -> str:
    y = 10 + 30 * index
    parts, x = [], 320.0
    for name, count in (
        ("accepted", row.accepted),
        ("overridden", row.overridden),
        ("unanswered", row.unanswered),
    ):
        width = BAR_WIDTH * count / row.issued if row.issued else 0
        if width:
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="20" '
                f'fill="{COLOURS[name]}"><title>{name}: {count}</title></rect>'
            )
        x += width
    label = html.escape(f"{row.topic} ({row.indicator})")
    return f'<text x="0" y="{y + 14}">{label}</text>' + "".join(parts)
