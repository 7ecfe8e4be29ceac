"""``alpha1-cds``: serve the service, or evaluate a patient Bundle offline."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fhir_mappings.fhirjson import bundle_resources

from . import logs, urls
from .config import ConfigError, Settings
from .explain import format_explanation
from .pipeline import draft_orders, evaluate
from .services import SERVICES

FILE_DESCRIPTOR_ROOM = 1024  # files, sockets to the database and FHIR servers
HOOKS = sorted({service.hook for service in SERVICES.values()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpha1-cds", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the CDS service (granian)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=_default_workers())
    serve.add_argument(
        "--threads", type=int, help="threads per worker running requests (request_threads)"
    )
    serve.add_argument("--config", help="TOML settings file (default: $ALPHA1_CDS_CONFIG)")

    run = commands.add_parser("evaluate", help="print the cards for a FHIR Bundle, offline")
    run.add_argument("bundle", type=Path, help="a FHIR Bundle holding the Patient and its data")
    run.add_argument("--hook", choices=HOOKS, default="patient-view")
    run.add_argument("--json", action="store_true", help="print the raw CDS Hooks response")
    run.add_argument("--date", type=date.fromisoformat, help="evaluate as of this date")
    run.add_argument(
        "--explain",
        action="store_true",
        help="after the cards: each card's rule branch, suppressed and hidden topics, "
        "what could not be read, and every criterion as judged",
    )

    cards = commands.add_parser(
        "cards", help="one HTML page with every card the sample patients produce, for review"
    )
    cards.add_argument("--output", type=Path, default=Path("alpha1-cds-cards.html"))
    cards.add_argument("--patients", type=Path, help="a folder of FHIR Bundles (default: samples)")
    cards.add_argument("--date", type=date.fromisoformat, help="judge as of this date")

    report = commands.add_parser("feedback-report", help="acceptance and override rates per topic")
    report.add_argument("--since", type=date.fromisoformat, help="cards issued on or after DATE")
    report.add_argument("--format", choices=("text", "json", "html"), default="text")
    report.add_argument("--database", help="database URL (default: the database_url setting)")
    report.add_argument("--output", type=Path, help="write to this file instead of stdout")

    load = commands.add_parser(
        "load-patients", help="upload the sample patients to a FHIR R4 server"
    )
    load.add_argument("--fhir-server", required=True, help="the FHIR base URL")
    load.add_argument("--token", help="a bearer token for the server, if it needs one")
    load.add_argument("--patients", type=Path, help="a folder of FHIR Bundles (default: samples)")

    demo = commands.add_parser(
        "demo", help="a FHIR server with the sample patients and the service, on loopback"
    )
    demo.add_argument("--port", type=int, default=8080, help="the CDS service's port")
    demo.add_argument("--fhir-port", type=int, default=8090, help="the FHIR server's port")
    demo.add_argument("--patients", type=Path, help="a folder of FHIR Bundles (default: samples)")

    screening = commands.add_parser(
        "screen", help="worklists of the patients AATD care is missing, from a Bulk Data export"
    )
    screening.add_argument(
        "export", type=Path, nargs="?", help="a folder of NDJSON files ($export)"
    )
    screening.add_argument(
        "--fhir-server",
        help="export from this FHIR base first (token: $ALPHA1_CDS_BULK_TOKEN)",
    )
    screening.add_argument("--group", help="Group/<id>/$export instead of Patient/$export")
    screening.add_argument(
        "--since",
        help="_since: export only what changed after this instant (needs --previous; default "
        "with --previous: the previous export's transactionTime)",
    )
    screening.add_argument(
        "--previous",
        type=Path,
        help="the whole export of an earlier run (its OUT/export): changes are filed over it",
    )
    screening.add_argument("--date", type=date.fromisoformat, help="judge as of this date")
    screening.add_argument("--out", type=Path, required=True, help="the folder to write to")
    screening.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    screening.add_argument(
        "--scheduler", help="a Dask distributed scheduler (tcp://host:port) to screen on"
    )
    screening.add_argument(
        "--aggregate-only", action="store_true", help="the report only: no patient is named"
    )

    build = commands.add_parser(
        "build-sheet", help="what an EHR analyst enters: endpoints, prefetch, audiences, SMART"
    )
    build.add_argument("--format", choices=("md", "html"), default="md")
    build.add_argument("--config", help="TOML settings file (default: $ALPHA1_CDS_CONFIG)")
    build.add_argument("--output", type=Path, help="write to this file instead of stdout")

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "feedback-report":
            return _feedback_report(args)
        if args.command == "load-patients":
            return _load_patients(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "cards":
            return _cards(args)
        if args.command == "build-sheet":
            return _build_sheet(args)
        if args.command == "screen":
            return _screen(args)
        return _evaluate(args)
    except (ConfigError, UsageError) as error:
        print(f"alpha1-cds: {error}", file=sys.stderr)
        return 2


class UsageError(Exception):
    """Input the command cannot work with; printed without a traceback."""


def _default_workers() -> int:
    return max(2, os.cpu_count() or 1)


def _serve(args: argparse.Namespace) -> int:
    """granian with the bridge in cds_service/serving.py (why: that module's docstring)."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    from .metrics import prepare_directory
    from .store import StoreStartError, prepare_store

    if args.config:
        os.environ["ALPHA1_CDS_CONFIG"] = args.config
    if args.threads is not None:
        os.environ["ALPHA1_CDS_REQUEST_THREADS"] = str(args.threads)
    settings = _serving_settings(Settings.load(), args.host)
    # Workers load their settings from the environment; the mode decided here goes with it.
    os.environ["ALPHA1_CDS_AUTH_MODE"] = str(settings.auth_mode)
    logs.configure(settings.log_level)
    # The schema and the generated key, once, before any worker starts (workers then find
    # them done; migrate() is race-safe as well, for servers that do not do this).
    try:
        prepare_store(settings.database_url, settings.database_start_timeout)
    except StoreStartError as error:
        print(f"alpha1-cds: {error}", file=sys.stderr)
        return 1
    _raise_file_limit(settings.max_connections)
    # One metrics directory for the workers, so /metrics on any of them shows them all.
    prepare_directory()
    print(_listening(args, settings), flush=True)
    Server(
        "cds_service.serving:application",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.RSGI,
        workers=args.workers,
        loop=Loops.auto,
        http=HTTPModes.http1,
        websockets=False,
        # granian's default admits backlog / workers connections per worker (512 with two):
        # about 1,024 idle connections then left no room for anyone.
        backlog=settings.connection_backlog,
        backpressure=max(1, settings.max_connections // args.workers),
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.idle_timeout * 1000)),
        log_level=LogLevels.warning,
        log_dictconfig=logs.GRANIAN_LOGGING,
        respawn_failed_workers=True,
        workers_kill_timeout=10,
    ).serve()
    return 0


def _listening(args: argparse.Namespace, settings: Settings) -> str:
    """One line on stdout (the JSON log is on stderr) saying where the service answers, how
    it checks clients, and where it keeps cards: what a first run needs to know."""
    import sqlalchemy as sa

    host = f"[{args.host}]" if ":" in args.host else args.host
    store = sa.engine.make_url(settings.database_url).render_as_string(hide_password=True)
    return (
        f"alpha1-cds: serving http://{host}:{args.port}/cds-services"
        f" (auth {settings.auth_mode}, {args.workers} workers, store {store})"
    )


def _raise_file_limit(connections: int) -> None:
    """Each connection is a file descriptor: raise this process's soft limit (its workers
    inherit it) towards ``connections`` plus room for files and the database, and say so in
    one line when the hard limit is lower (a flood then meets accept errors early)."""
    import resource

    wanted = connections + FILE_DESCRIPTOR_ROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, ceiling), hard))
    if ceiling < wanted:
        logs.event(
            "open-files-limited",
            logging.WARNING,
            limit=ceiling,
            wanted=wanted,
            note="below max_connections plus room for files: raise it (ulimit -Hn, LimitNOFILE)",
        )


def _screen(args: argparse.Namespace) -> int:
    from . import pipeline
    from .screening.export import ExportError
    from .screening.run import interactive, screen

    if args.since and not args.previous:
        raise UsageError(
            "--since exports only what changed: give --previous with the earlier run's "
            "OUT/export, so the records that did not change are screened too"
        )
    if args.previous is not None and not args.previous.is_dir():
        raise UsageError(f"--previous {args.previous} is not a folder of NDJSON files")
    export = args.export
    if args.fhir_server:
        export = args.out / ("changes" if args.previous else "export")
    elif export is None or not export.is_dir():
        raise UsageError(f"{export} is not a folder of NDJSON files (or give --fhir-server)")
    merged = _merged_folder(args, export)  # checked before any request
    if args.fhir_server:
        _bulk_export(args, export)
    try:
        summary = screen(
            export,
            args.date or pipeline.today(),
            args.out,
            workers=max(1, args.workers),
            aggregate_only=args.aggregate_only,
            progress=interactive(),
            scheduler=args.scheduler,
            previous=args.previous,
            merged_to=merged,
        )
    except ExportError as error:
        raise UsageError(str(error)) from None
    print(json.dumps(summary), flush=True)
    return 0


def _merged_folder(args: argparse.Namespace, changes: Path) -> Path | None:
    """Where an incremental run writes the merged whole (the next run's --previous):
    OUT/export, which must be neither the changes nor the previous export."""
    if args.previous is None:
        return None
    merged = args.out / "export"
    taken = {changes.resolve(), args.previous.resolve()}
    if merged.resolve() in taken:
        raise UsageError(f"{merged} holds an input: choose another --out for the merged export")
    return merged


def _bulk_export(args: argparse.Namespace, folder: Path) -> None:
    """The export, downloaded by the Bulk Data client into ``folder`` (OUT/export, or
    OUT/changes for an incremental run, whose ``_since`` defaults to the previous export's
    transactionTime); the token from the environment only (a command-line argument would
    show in the process list)."""
    from .screening.bulk import BulkClient, BulkError

    settings = Settings.load()
    token = os.environ.get("ALPHA1_CDS_BULK_TOKEN") or None
    since = _since(args) if args.previous else None
    try:
        client = BulkClient(args.fhir_server, settings, token=token)
        client.export(folder, group=args.group, since=since)
    except BulkError as error:
        raise UsageError(f"bulk export: {error}") from None


def _since(args: argparse.Namespace) -> str:
    """The ``_since`` of an incremental export: given, or the previous export's
    transactionTime; refused when the previous export came from another server or group,
    or when changes between it and ``--since`` would be missed."""
    from .screening.export import read_about

    about = read_about(args.previous)
    taken = about.get("transactionTime")
    server, group = about.get("server"), about.get("group")
    if about and server not in (None, args.fhir_server.rstrip("/")):
        raise UsageError(f"--previous was exported from {server}, not {args.fhir_server}")
    if about and group != args.group:
        raise UsageError(f"--previous was exported for group {group}, not {args.group}")
    if not args.since:
        if not isinstance(taken, str):
            raise UsageError("--previous does not say when it was exported: give --since")
        return taken
    if isinstance(taken, str) and _instant(args.since) > _instant(taken):
        raise UsageError(
            f"--since {args.since} is after the previous export ({taken}): changes between "
            "them would be missed"
        )
    return str(args.since)


def _instant(text: str) -> datetime:
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text} is not an instant (2026-11-01T00:00:00Z)") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _build_sheet(args: argparse.Namespace) -> int:
    from . import build_sheet
    from .app import _use_site_codes

    settings = Settings.load(path=args.config)
    _use_site_codes(settings)  # the templates with the site's codes, as the service serves
    data = build_sheet.sheet(settings)
    text = build_sheet.as_html(data) if args.format == "html" else build_sheet.as_markdown(data)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _cards(args: argparse.Namespace) -> int:
    from . import pipeline
    from .devtools.demo import SAMPLES
    from .gallery import write_gallery

    patients = args.patients or SAMPLES
    if not patients.is_dir() or not any(patients.glob("*.json")):
        raise UsageError(f"no patient Bundles in {patients}: give --patients DIR")
    shown = write_gallery(patients, args.output, args.date or pipeline.today())
    print(f"alpha1-cds: {shown} cards written to {args.output}")
    return 0


def _load_patients(args: argparse.Namespace) -> int:
    from .devtools.demo import SAMPLES, DemoError, load_patients

    try:
        failed = load_patients(args.fhir_server, args.token, args.patients or SAMPLES, print)
    except DemoError as error:
        raise UsageError(str(error)) from None
    return 1 if failed else 0


def _demo(args: argparse.Namespace) -> int:
    import signal
    import tempfile
    import threading

    from .devtools.demo import SAMPLES, Demo, DemoError

    logs.configure("WARNING")  # the guide is the output; hook lines would bury it
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    folder = tempfile.mkdtemp(prefix="alpha1-demo-")
    demo = Demo(
        args.port, args.fhir_port, args.patients or SAMPLES, f"sqlite:///{folder}/demo.sqlite"
    )
    try:
        demo.run(lambda line: print(line, flush=True), stop)
    except DemoError as error:
        raise UsageError(str(error)) from None
    return 0


def _feedback_report(args: argparse.Namespace) -> int:
    from . import report
    from .store import Store

    url = args.database or Settings.load().database_url
    store = Store(url)
    try:
        built = report.build(store.engine, args.since)
    finally:
        store.close()
    render = {"text": report.as_text, "json": report.as_json, "html": report.as_html}[args.format]
    text = render(built)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _serving_settings(settings: Settings, host: str) -> Settings:
    """Auth is off by default only for a developer on loopback, and never off elsewhere."""
    loopback = urls.is_loopback(host)
    if settings.auth_mode is None:
        settings = settings.with_values({"auth_mode": "off" if loopback else "required"})
    if settings.auth_mode == "off" and not loopback:
        raise ConfigError("auth_mode 'off' is only allowed when serving on a loopback address")
    settings.check_audience()
    return settings


def _evaluate(args: argparse.Namespace) -> int:

    resources = _read_bundle(args.bundle)
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1 or not isinstance(patients[0].get("id"), str):
        raise UsageError(f"{args.bundle} must hold exactly one Patient with an id")
    policy = Settings.load().policy()
    # Offline, the Bundle's draft orders are what an EHR would send as context.draftOrders,
    # all of them under review (order-sign): the service's own rule decides.
    sent = [
        {"resource": r}
        for r in resources
        if r["resourceType"] == "MedicationRequest" and r.get("status") == "draft"
    ]
    _, drafts = draft_orders({"resourceType": "Bundle", "entry": sent}, None)
    result = evaluate(
        args.hook, resources, patients[0]["id"], policy, as_of=args.date, drafts=drafts
    )

    if args.json:
        print(json.dumps(result.response, indent=2, ensure_ascii=False))
    else:
        print(format_cards(result.response["cards"]))
        for note in result.unread_notes:  # said where the integrator looks first
            print(f"could not be read: {note}")
    if args.explain and result.explanation is not None:
        print(f"\n{format_explanation(result.explanation)}")
    return 0


def _read_bundle(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise UsageError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise UsageError(f"{path} is not a FHIR Bundle")
    return list(bundle_resources(data))


def format_cards(cards: list[dict[str, Any]]) -> str:
    """Cards as a clinician would skim them in a terminal."""
    if not cards:
        return "No cards: nothing to advise for this patient."
    blocks = []
    for card in cards:
        lines = [
            f"[{card['indicator'].upper()}] {card['summary']}",
            f"  topic: {card['source']['topic']['code']}   source: {card['source']['label']}",
            "",
            *(f"  {line}" if line else "" for line in card.get("detail", "").splitlines()),
        ]
        for suggestion in card.get("suggestions", []):
            lines.append(f"  -> suggestion: {suggestion['label']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


if __name__ == "__main__":
    sys.exit(main())
