"""``alpha1-cds build-sheet``: what an EHR analyst types into the EHR, from the settings.

Per service: the hook, the endpoint, the prefetch keys with their templates verbatim, the
JWT audience of each endpoint it calls, the trusted issuers; then the SMART app's launch
and redirect URIs, client id and scopes; then the card topics with their indicators as
this site's settings make them (floors, silent, off). Markdown for a ticket or a wiki,
HTML to print. Everything comes from the running configuration: what the sheet says is
what the service does.
"""

from __future__ import annotations

import html
from typing import Any

from hooks.knowledge import topics

from .config import Settings
from .services import SERVICES
from .smart_app.launch import scopes

PLACEHOLDER_BASE = "https://<public_base_url>"


def sheet(settings: Settings) -> dict[str, Any]:
    """The build sheet as data (both formats render this)."""
    base = (settings.public_base_url or PLACEHOLDER_BASE).rstrip("/")
    policy = settings.policy()
    issuers = [client.iss for client in settings.trusted_clients]
    services = []
    for service in SERVICES.values():
        endpoint = f"{base}/cds-services/{service.id}"
        services.append(
            {
                "id": service.id,
                "hook": service.hook,
                "title": service.title,
                "endpoint": endpoint,
                "audiences": {
                    "discovery": f"{base}/cds-services",
                    "service": endpoint,
                    "feedback": f"{endpoint}/feedback",
                },
                "prefetch": {key: q.template for key, q in service.queries.items()},
            }
        )
    cards = [
        {
            "topic": code,
            "display": topic.display,
            "indicator": policy.indicator(code, topic.indicator),
            "state": "off"
            if code in policy.topics_off
            else "silent"
            if code in policy.silent_topics
            else "shown",
        }
        for code, topic in topics().items()
    ]
    return {
        "base": base,
        "auth": settings.auth_mode or "required",
        "issuers": issuers or ["(none configured: set trusted_clients)"],
        "subject": "any (the CDS Hooks client id; not checked)",
        "services": services,
        "smart": {
            "launch": f"{base}/app/launch",
            "redirect": f"{base}/app/callback",
            "client_id": settings.smart_client_id,
            "scopes_ehr": scopes(v2=True, standalone=False),
            "scopes_v1": scopes(v2=False, standalone=False),
            "frame_ancestors": list(settings.smart_frame_ancestors) or ["(none: not framed)"],
        },
        "cards": cards,
    }


def as_markdown(data: dict[str, Any]) -> str:
    lines = [
        "# alpha1-cds: EHR build sheet",
        "",
        f"Base URL: `{data['base']}` · client JWTs: {data['auth']} · trusted `iss`: "
        + ", ".join(f"`{i}`" for i in data["issuers"])
        + f" · `sub`: {data['subject']}",
    ]
    for service in data["services"]:
        lines += [
            "",
            f"## {service['title']} (`{service['id']}`)",
            "",
            f"- Hook: `{service['hook']}`",
            f"- Endpoint: `{service['endpoint']}`",
            "- JWT `aud` per call: "
            + "; ".join(f"{k} `{v}`" for k, v in service["audiences"].items()),
            "",
            "| prefetch key | template |",
            "|---|---|",
            *(f"| `{key}` | `{template}` |" for key, template in service["prefetch"].items()),
        ]
    smart = data["smart"]
    lines += [
        "",
        "## SMART app",
        "",
        f"- Launch URI: `{smart['launch']}`",
        f"- Redirect URI: `{smart['redirect']}`",
        f"- Client id: `{smart['client_id']}` (public client, PKCE S256)",
        f"- Scopes (SMART v2): `{smart['scopes_ehr']}`",
        f"- Scopes (v1 servers): `{smart['scopes_v1']}`",
        "- Frame ancestors: " + ", ".join(f"`{a}`" for a in smart["frame_ancestors"]),
        "",
        "## Card topics",
        "",
        "| topic | display | indicator | state |",
        "|---|---|---|---|",
        *(
            f"| `{c['topic']}` | {c['display']} | {c['indicator']} | {c['state']} |"
            for c in data["cards"]
        ),
    ]
    return "\n".join(lines) + "\n"


def as_html(data: dict[str, Any]) -> str:
    """The same sheet as a printable page (markdown-it renders the Markdown, raw HTML off)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(as_markdown(data))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape('alpha1-cds: EHR build sheet')}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}code{word-break:break-all}"
        "</style></head><body>" + body + "</body></html>\n"
    )
