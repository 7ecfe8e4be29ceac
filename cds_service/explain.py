"""``alpha1-cds evaluate --explain``: why each card fired and why the others did not.

For an integrator or a knowledge author (the "evaluate every definition" view a CQL author
has): the branch of the rule behind each card, the topics a stronger topic suppressed,
the topics an override hid, the records that could not be read, and every criterion of
each therapy as judged, with the fact and the record it rests on.
"""

from __future__ import annotations

from hooks import Explanation, Judgement, Recommendation


def format_explanation(explanation: Explanation) -> str:
    sections = [
        _section(
            "Shown (topic, branch of the rule)",
            [f"{r.topic}  {r.branch}" for r in _with_items(explanation)],
        ),
        _section(
            "Suppressed by a stronger topic",
            [f"{topic}  by {', '.join(by)}" for topic, by in explanation.suppressed.items()],
        ),
        _section("Hidden by a clinician's override", list(explanation.hidden)),
        _section("Turned off by the site (topics_off, or the trigger)", list(explanation.off)),
        _section(
            "Decided silently (recorded, not shown)",
            [f"{r.topic}  {r.branch}" for r in _with_items(explanation, explanation.silent)],
        ),
        _section("Notes on the record (not read, ignored, preliminary)", list(explanation.notes)),
    ]
    for therapy, judgements in explanation.judgements().items():
        sections.append(_section(f"Criteria: {therapy}", [_judged(j) for j in judgements]))
    return "\n\n".join(sections)


def _with_items(
    explanation: Explanation, recommendations: list[Recommendation] | None = None
) -> list[Recommendation]:
    """Each card, and under a checklist each of its items."""
    shown: list[Recommendation] = []
    chosen = explanation.recommendations if recommendations is None else recommendations
    for recommendation in chosen:
        shown.append(recommendation)
        shown.extend(recommendation.items)
    return shown


def _judged(judgement: Judgement) -> str:
    kind = f" [{judgement.kind.value}]" if judgement.kind is not None else ""
    source = judgement.fact.source
    cited = f" ({source.cite()})" if source is not None else ""
    return f"{judgement.status.value:<8} {judgement.name}{kind}: {judgement.fact.text}{cited}"


def _section(title: str, lines: list[str]) -> str:
    body = "\n".join(f"  {line}" for line in lines) if lines else "  (none)"
    return f"{title}:\n{body}"
