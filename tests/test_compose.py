"""docker-compose.yml and the Dockerfile: the promised services, wired to each other through the names Settings reads.

No container runs here; these read the files as Docker would and check that every name, host, port, secret and
path one of them refers to is defined by another.
"""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from fastapi import FastAPI

from covr_core.platform.settings import Settings
from covr_pipelines.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
# The services the README promises that run Covr's own image; covr_services() finds every one that does.
COVR_SERVICES = {"migrate", "dagster-webserver", "dagster-daemon", "api"}
# Dagster's own instance configuration (dagster.yaml), not Covr settings.
DAGSTER_NAMES = {"DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}
# The port each backing image listens on by default; the compose file does not move them.
DEFAULT_PORTS = {"postgres": 5432, "minio": 9000, "meilisearch": 7700, "qdrant": 6333}


def settings_env_names() -> set[str]:
    names = set()
    prefix = Settings.model_config["env_prefix"]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None:
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def covr_services(services: dict) -> set[str]:
    """The services built from this repository's Dockerfile."""
    return {name for name, service in services.items() if service.get("build") == "."}


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else list(command)


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_stack_has_every_promised_service(services):
    """README "Production": Postgres with pgvector, Meilisearch, Qdrant, MinIO and its bucket, Mailpit, a one-shot
    migrate, the Dagster webserver and daemon, and the API."""
    assert {"postgres", "meilisearch", "qdrant", "minio", "minio-init", "mailpit"} <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg16")
    assert COVR_SERVICES <= covr_services(services), "each must run the image the Dockerfile builds"


def test_covr_services_use_only_settings_names(services):
    known = settings_env_names()
    for name in covr_services(services):
        env = _env(services[name])
        unknown = set(env) - known - DAGSTER_NAMES
        assert not unknown, f"service {name} sets {sorted(unknown)}, which Settings does not read"
        assert {"DATABASE_URL", "COVR_S3_ENDPOINT_URL", "COVR_S3_BUCKET", "COVR_S3_ACCESS_KEY_ID",
                "COVR_S3_SECRET_ACCESS_KEY", "MEILI_URL", "MEILI_MASTER_KEY", "QDRANT_URL"} <= set(env), name


def _points_at(url: str, service: str) -> bool:
    parts = urlsplit(url)
    return parts.hostname == service and (parts.port or DEFAULT_PORTS[service]) == DEFAULT_PORTS[service]


@pytest.mark.parametrize("name", sorted(covr_services(yaml.safe_load((ROOT / "docker-compose.yml").read_text())
                                                      ["services"])))
def test_each_covr_service_reaches_the_backing_services_with_their_credentials(services, name):
    env = _env(services[name])

    database = urlsplit(env["DATABASE_URL"])
    postgres = _env(services["postgres"])
    assert _points_at(env["DATABASE_URL"], "postgres")
    assert (database.username, database.password, database.path.lstrip("/")) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])

    minio = _env(services["minio"])
    assert _points_at(env["COVR_S3_ENDPOINT_URL"], "minio")
    assert (env["COVR_S3_ACCESS_KEY_ID"], env["COVR_S3_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    # minio-init creates exactly the bucket Covr writes to, with the same credentials.
    init = services["minio-init"]["entrypoint"]
    assert f"mc mb --ignore-existing covr/{env['COVR_S3_BUCKET']}" in init
    assert f"http://minio:9000 {minio['MINIO_ROOT_USER']} {minio['MINIO_ROOT_PASSWORD']}" in init

    assert _points_at(env["MEILI_URL"], "meilisearch")
    assert env["MEILI_MASTER_KEY"] == _env(services["meilisearch"])["MEILI_MASTER_KEY"]
    assert _points_at(env["QDRANT_URL"], "qdrant")
    assert env["COVR_SMTP_HOST"] == "mailpit"


def test_settings_read_the_compose_values(services, monkeypatch):
    for name, value in _env(services["api"]).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql://covr:")
    assert settings.uses_s3 and settings.s3_bucket == "covr"
    assert settings.s3_secret_access_key.get_secret_value() == "covr-secret"
    assert settings.meili_url == "http://meilisearch:7700" and settings.qdrant_url == "http://qdrant:6333"
    assert str(settings.clip_weights).endswith(".safetensors") and settings.smtp_port == 1025


def test_services_start_in_order(services):
    """Postgres healthy, then the one-shot migrate, then the API and Dagster on a migrated schema."""
    for name, service in services.items():
        depends = service.get("depends_on") or []
        assert set(depends) <= set(services), f"{name} depends on a service that is not defined"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert _command(services["migrate"]) == ["covr", "db", "migrate"]
    for name in covr_services(services) - {"migrate"}:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts volume {source!r}, not declared under volumes:"


def test_dagster_runs_on_postgres_storage_in_a_database_postgres_creates(services):
    instance = yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text())
    storage = instance["storage"]["postgres"]["postgres_db"]
    assert {k: v["env"] for k, v in storage.items() if isinstance(v, dict)} == {
        "hostname": "DAGSTER_PG_HOST", "username": "DAGSTER_PG_USER", "password": "DAGSTER_PG_PASSWORD",
        "db_name": "DAGSTER_PG_DB"}
    postgres = _env(services["postgres"])
    init_sql = (ROOT / "docker" / "postgres-init.sql").read_text()
    mounted = [v for v in services["postgres"]["volumes"] if v.startswith("./docker/postgres-init.sql:")]
    assert mounted and mounted[0].split(":")[1].startswith("/docker-entrypoint-initdb.d/")
    for name in ("dagster-webserver", "dagster-daemon"):
        env = _env(services[name])
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert (env["DAGSTER_PG_USER"], env["DAGSTER_PG_PASSWORD"]) == (
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
        assert f"create database {env['DAGSTER_PG_DB']} owner {env['DAGSTER_PG_USER']}" in init_sql
        assert "-w" in _command(services[name]) and "workspace.yaml" in _command(services[name])


def test_the_dockerfile_installs_the_package_the_services_run():
    instructions = _dockerfile()
    assert re.fullmatch(r"python:3\.1[1-9][\w.-]*", dict(instructions)["FROM"]), "the package needs Python 3.11+"

    copies = {src: i for i, (kind, args) in enumerate(instructions) if kind == "COPY" for src in args.split()[:-1]}
    packages = {p.rstrip("*") for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    for package in packages:
        assert package in copies, f"the Dockerfile does not COPY {package}, which pyproject.toml packages"
    assert {"pyproject.toml", "workspace.yaml", "docker/dagster.yaml"} <= set(copies)

    installs = [(i, args) for i, (kind, args) in enumerate(instructions) if kind == "RUN" and "pip install" in args]
    assert installs, "the Dockerfile never pip-installs the package"
    at, install = installs[-1]
    target = re.search(r"pip install[^'\"]*['\"]?\.(\[([\w,-]+)\])?['\"]?(\s|$)", install)
    assert target, f"the Dockerfile installs something other than the package itself: {install}"
    assert all(copies[p] < at for p in packages | {"pyproject.toml"}), "pip install runs before the sources are copied"
    extras = set(filter(None, (target.group(2) or "").split(",")))
    assert extras <= set(_pyproject()["project"]["optional-dependencies"]), extras
    assert "clip" in extras, "the services embed covers with CLIP (COVR_CLIP_WEIGHTS is set)"
    apt = " ".join(args for kind, args in instructions if kind == "RUN" and "apt-get install" in args)
    assert "tesseract-ocr" in apt and "tesseract-ocr-eng" in apt


def test_the_image_commands_exist_in_the_installed_package(services):
    """Each covr service runs something the image provides: a `covr` command line the CLI accepts, or a console
    script of an installed distribution (Dagster's, uvicorn's) with an importable target."""
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    module, _, attr = _pyproject()["project"]["scripts"]["covr"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
    for name in covr_services(services):
        command = _command(services[name])
        assert command, f"{name} has no command"
        if command[0] == "covr":
            _parser().parse_args(command[1:])  # argparse exits on a command line it does not accept
        else:
            assert command[0] in scripts, f"{name} runs {command[0]}, which no installed distribution provides"
        if command[0] == "uvicorn":
            module, _, attr = command[1].partition(":")
            assert isinstance(getattr(importlib.import_module(module), attr), FastAPI)

    env_lines = [args for kind, args in _dockerfile() if kind == "ENV"]
    dagster_home = _env(services["dagster-webserver"])["DAGSTER_HOME"]
    assert any(f"DAGSTER_HOME={dagster_home}" in line for line in env_lines)
    assert any(kind == "RUN" and "$DAGSTER_HOME/dagster.yaml" in args for kind, args in _dockerfile())
