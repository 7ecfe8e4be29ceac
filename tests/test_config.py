"""Settings: defaults, overlaid by a TOML file, overlaid by the environment."""

from __future__ import annotations

import pytest

from cds_service import Settings, create_app
from cds_service.config import ConfigError


def test_defaults_need_no_configuration():
    settings = Settings.load(environ={})
    assert settings == Settings()
    assert settings.fhir_deadline > settings.fhir_timeout


def test_environment_overrides_toml(tmp_path):
    path = tmp_path / "alpha1.toml"
    path.write_text('fhir_timeout = 0.5\nfhir_max_pages = 4\ncors_origins = ["https://a.org"]\n')
    env = {
        "ALPHA1_CDS_CONFIG": str(path),
        "ALPHA1_CDS_FHIR_MAX_PAGES": "7",
        "ALPHA1_CDS_CORS_ORIGINS": "https://b.org, https://c.org",
    }
    settings = Settings.load(environ=env)
    assert settings.fhir_timeout == 0.5
    assert settings.fhir_max_pages == 7
    assert settings.cors_origins == ("https://b.org", "https://c.org")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fhir_timeout": "0"}, "fhir_timeout must be positive"),
        ({"fhir_max_pages": "many"}, "fhir_max_pages: cannot read"),
        ({"cors_origins": "*", "cors_allow_credentials": "true"}, "cannot be combined"),
        ({"log_level": "LOUD"}, "log_level must be one of"),
        ({"public_base_url": "cds.example.org"}, "absolute http(s) URL"),
        ({"no_such_setting": "1"}, "unknown setting"),
        ({"max_connections": "0"}, "max_connections must be at least 1"),
        ({"connection_backlog": "16"}, "connection_backlog must be at least 128"),
        ({"idle_timeout": "120"}, "idle_timeout must be between 1 and 60 seconds"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings().with_values(values)


def test_body_limit_comes_from_settings():
    app = create_app({"max_body_bytes": "1024", "auth_mode": "off"})
    assert app.config["MAX_CONTENT_LENGTH"] == 1024


def test_default_settings_with_auth_required_name_what_is_missing():
    """A deployment that leaves auth at its default (required) must say where it is served."""
    import pytest

    from cds_service.config import ConfigError

    with pytest.raises(ConfigError, match="needs public_base_url"):
        create_app({"max_body_bytes": "1024"})


def test_serve_raises_its_open_file_limit_for_its_connections():
    """Each held connection is a file descriptor: a soft limit of 1,024 (a common default)
    would refuse connections long before max_connections."""
    import json
    import resource
    import subprocess
    import sys

    script = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))\n"
        "from cds_service import logs\n"
        "from cds_service.cli import _raise_file_limit\n"
        "logs.configure('INFO')\n"
        "_raise_file_limit(4000)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    raised, hard = (int(value) for value in done.stdout.split())
    wanted = 4000 + 1024  # the connections and room for files and the database
    unlimited = hard == resource.RLIM_INFINITY
    assert raised == (wanted if unlimited else min(wanted, hard))
    said = [json.loads(line) for line in done.stderr.splitlines()]  # JSON lines, as all logs
    limited = [line for line in said if line["event"] == "open-files-limited"]
    assert bool(limited) == (not unlimited and hard < wanted)
