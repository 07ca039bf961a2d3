"""Secrets from the environment reach resources as dg.EnvVar, so the Dagster UI shows names, not values."""

from __future__ import annotations

import json

import dagster as dg

from covr_core.platform.settings import Settings
from covr_pipelines.resources import PostgresResource, build_resources

S3_ENV = {
    "COVR_S3_BUCKET": "covers",
    "COVR_S3_ENDPOINT_URL": "http://minio.invalid:9000",
    "COVR_S3_ACCESS_KEY_ID": "AKIA-covr-test",
    "COVR_S3_SECRET_ACCESS_KEY": "s3-secret-value",
    "QDRANT_URL": "http://qdrant.invalid:6333",
    "QDRANT_API_KEY": "qdrant-secret-value",
}


def _env_config(resource: dg.ConfigurableResource) -> dict:
    """The resource's config as Dagster records it for the UI."""
    return resource._convert_to_config_dictionary()


def test_environment_secrets_are_env_vars_in_the_resource_config(db_url, tmp_path, monkeypatch):
    for name, value in {**S3_ENV, "DATABASE_URL": db_url, "COVR_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)

    resources = build_resources(Settings())

    assert _env_config(resources["postgres"])["database_url"] == {"env": "DATABASE_URL"}
    assert _env_config(resources["vectors"])["qdrant_api_key"] == {"env": "QDRANT_API_KEY"}
    store_config = _env_config(resources["object_store"])
    assert (store_config["access_key_id"], store_config["secret_access_key"]) == (
        {"env": "COVR_S3_ACCESS_KEY_ID"}, {"env": "COVR_S3_SECRET_ACCESS_KEY"})
    recorded = json.dumps([_env_config(r) for r in resources.values()])
    for secret in (db_url, "s3-secret-value", "qdrant-secret-value", "AKIA-covr-test"):
        assert secret not in recorded


def test_an_env_var_database_url_still_connects_in_a_run_and_directly(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COVR_HOME", str(tmp_path))
    postgres = build_resources(Settings())["postgres"]
    assert isinstance(postgres.database_url, dg.EnvVar)

    @dg.asset
    def database_name(postgres: PostgresResource) -> str:
        with postgres.connection() as conn:
            return conn.execute("select current_database() as name").fetchone()["name"]

    result = dg.materialize([database_name], resources={"postgres": postgres})
    assert result.success
    assert result.output_for_node("database_name") == db_url.split("?")[0].rsplit("/", 1)[1]

    # The CLI also calls resources outside any run, where Dagster does not resolve the EnvVar.
    try:
        with postgres.connection() as conn:
            assert conn.execute("select 1 as one").fetchone() == {"one": 1}
    finally:
        postgres.teardown_after_execution(None)


def test_s3_and_qdrant_secrets_resolve_for_direct_use(tmp_path, monkeypatch):
    for name, value in {**S3_ENV, "COVR_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    resources = build_resources(Settings())

    credentials = resources["object_store"].store().client._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("AKIA-covr-test", "s3-secret-value")
    initialised = resources["object_store"].process_config_and_initialize()
    assert initialised.secret_access_key == "s3-secret-value"


def test_settings_built_in_code_pass_their_values(db_url, tmp_path, monkeypatch):
    """No variable behind a value (or a different one): the value itself, since an EnvVar would be wrong."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone:else@db.invalid/other")

    resources = build_resources(Settings(home=tmp_path, database_url=db_url, qdrant_api_key="in-code"))

    assert resources["postgres"].database_url == db_url
    assert not isinstance(resources["postgres"].database_url, dg.EnvVar)
    assert resources["vectors"].qdrant_api_key == "in-code"
