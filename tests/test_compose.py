"""docker-compose.yml configures Covr's services only through the names Settings reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from covr_core.platform.settings import Settings

COVR_SERVICES = {"migrate", "dagster-webserver", "dagster-daemon", "api"}
# Dagster's own instance configuration (dagster.yaml), not Covr settings.
DAGSTER_NAMES = {"DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}


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


def _compose() -> dict:
    return yaml.safe_load(Path("docker-compose.yml").read_text())


def test_the_stack_has_every_production_service():
    services = set(_compose()["services"])
    assert {"postgres", "meilisearch", "qdrant", "minio", "minio-init"} <= services
    assert COVR_SERVICES <= services


def test_covr_services_use_only_settings_names():
    known = settings_env_names()
    for name in COVR_SERVICES:
        env = _compose()["services"][name]["environment"]
        unknown = set(env) - known - DAGSTER_NAMES
        assert not unknown, f"service {name} sets {sorted(unknown)}, which Settings does not read"
        assert {"DATABASE_URL", "COVR_S3_ENDPOINT_URL", "COVR_S3_BUCKET", "MEILI_URL", "QDRANT_URL"} <= set(env)


def test_settings_read_the_compose_values(monkeypatch):
    for name, value in _compose()["services"]["api"]["environment"].items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql://covr:")
    assert settings.uses_s3 and settings.s3_bucket == "covr"
    assert settings.meili_url and settings.qdrant_url
    assert str(settings.clip_weights).endswith(".safetensors") and settings.smtp_port == 1025


def test_dagster_uses_postgres_storage():
    instance = yaml.safe_load(Path("docker/dagster.yaml").read_text())
    assert "postgres" in instance["storage"]
    assert Path("Dockerfile").is_file()
