"""Settings read the documented environment names and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from covr_core.platform.settings import Settings

NAMES = ("COVR_HOME", "DATABASE_URL", "MEILI_URL", "QDRANT_URL", "COVR_S3_BUCKET", "COVR_CLIP_WEIGHTS")


def test_unset_means_the_embedded_default(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/somewhere/else")

    settings = Settings()

    assert settings.home == Path(".covr")
    assert settings.database_url is None and not settings.uses_s3
    assert settings.meili_url is None and settings.qdrant_url is None and settings.clip_weights is None


def test_environment_names_are_read(monkeypatch):
    monkeypatch.setenv("COVR_HOME", "/data/covr")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/covr")
    monkeypatch.setenv("COVR_S3_BUCKET", "photos")
    monkeypatch.setenv("COVR_PHASH_COPY_DISTANCE", "5")

    settings = Settings()

    assert settings.home == Path("/data/covr") and settings.pg_data_dir == Path("/data/covr/pg")
    assert settings.database_url == "postgresql://u@db/covr"
    assert settings.uses_s3 and settings.phash_copy_distance == 5


def test_field_names_work_in_code(tmp_path):
    settings = Settings(home=tmp_path, database_url="postgresql://x@y/z")
    assert settings.home == tmp_path and settings.database_url == "postgresql://x@y/z"


def test_pgvector_ef_search_reaches_the_vector_store(monkeypatch):
    from covr_core.search.vectors import store_from_settings
    from covr_core.vectors.stores import DEFAULT_EF_SEARCH

    monkeypatch.delenv("QDRANT_URL", raising=False)
    assert store_from_settings(Settings(), connect=None).ef_search == DEFAULT_EF_SEARCH
    monkeypatch.setenv("COVR_PGVECTOR_EF_SEARCH", "200")
    assert store_from_settings(Settings(), connect=None).ef_search == 200


def test_a_pool_too_small_for_a_reindex_is_refused(monkeypatch):
    from pydantic import ValidationError

    from covr_core.search.embedded import LOAD_SHARES

    monkeypatch.setenv("COVR_DB_POOL_MAX", str(LOAD_SHARES - 1))
    with pytest.raises(ValidationError, match="db_pool_max"):
        Settings()
    monkeypatch.setenv("COVR_DB_POOL_MAX", str(LOAD_SHARES))
    assert Settings().db_pool_max == LOAD_SHARES
