"""The nightly search job: both read models rebuilt and swapped in, and its checks pass or name what differs."""

from __future__ import annotations

import dagster as dg
import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row

from covr_pipelines.definitions import build_definitions
from covr_pipelines.defs.search.assets import (
    copy_search_index,
    cover_vector_index,
    documents_match_copies,
    sample_matches_model,
)
from covr_pipelines.defs.search.resources import build_search_resources
from covr_pipelines.resources import PostgresResource, build_resources
from tests.core.search_support import book, copy, user


@pytest.fixture
def shelf(db_url):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        alice, bob = user(conn, "alice"), user(conn, "bob")
        ids = [copy(conn, book(conn, f"Book number {i}", ["Some Author"]), alice if i % 2 else bob)
               for i in range(6)]
        copy(conn, book(conn, "Gone for good", []), alice, status="withdrawn")
        image = conn.execute("insert into media.image (object_key, uploader_id, status, sha256, phash, byte_size, "
                             "format, copy_id) values ('uploads/x.jpg', %s, 'accepted', %s, 1, 1, 'jpeg', %s) "
                             "returning image_id", (alice, "a" * 64, ids[0])).fetchone()["image_id"]
        vector = "[" + ",".join(map(repr, np.ones(512, dtype=np.float32).tolist())) + "]"
        conn.execute("insert into media.cover_embedding (image_id, model, embedding, copy_id, kind, sha256) "
                     "values (%s, 'test', %s::vector, %s, 'cover_front', %s)", (image, vector, ids[0], "a" * 64))
        yield {"conn": conn, "copies": ids, "alice": alice, "bob": bob, "image": image}


@pytest.fixture
def resources(settings):
    return build_resources(settings) | build_search_resources(settings)


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_the_reindex_job_rebuilds_both_read_models_and_its_checks_pass(shelf, resources):
    result = dg.materialize([copy_search_index, cover_vector_index, documents_match_copies, sample_matches_model],
                            resources=resources)
    assert result.success
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in
            (m for m in result.get_asset_materialization_events())}
    assert meta["copy_search_index"]["documents"].value == 6
    assert meta["cover_vector_index"]["points"].value == 1
    checks = _checks(result)
    assert checks["documents_match_copies"].passed and checks["sample_matches_model"].passed
    row = shelf["conn"].execute("select owner_id, holder_id, copy_status from media.cover_embedding").fetchone()
    assert (str(row["owner_id"]), str(row["holder_id"]), row["copy_status"]) == (shelf["bob"], shelf["bob"],
                                                                                    "available")


def test_the_checks_name_what_differs(shelf, resources):
    assert dg.materialize([copy_search_index], resources=resources).success
    conn = shelf["conn"]
    # Changes behind the index's back (no event, no sync): one copy edited, one more copy.
    conn.execute("update catalog.copy set notes = 'edited' where copy_id = %s", (shelf["copies"][0],))
    copy(conn, book(conn, "Unindexed", []), shelf["alice"])
    result = dg.materialize([copy_search_index, documents_match_copies, sample_matches_model], resources=resources,
                            selection=dg.AssetSelection.checks(documents_match_copies, sample_matches_model),
                            raise_on_error=False)
    checks = _checks(result)
    assert not checks["documents_match_copies"].passed
    assert checks["documents_match_copies"].metadata["documents"].value == 6
    assert checks["documents_match_copies"].metadata["copies"].value == 7
    assert not checks["sample_matches_model"].passed
    assert shelf["copies"][0] in checks["sample_matches_model"].description


def test_the_job_and_its_nightly_schedule_resolve(settings):
    defs = build_definitions(settings)
    job = defs.resolve_job_def("search_reindex_job")
    assert {n.name for n in job.nodes} >= {"copy_search_index", "cover_vector_index"}
    schedule = defs.get_repository_def().get_schedule_def("search_reindex_schedule")
    assert schedule.cron_schedule == "30 3 * * *" and schedule.job_name == "search_reindex_job"


def test_a_postgres_resource_too_small_for_a_reindex_is_refused(db_url):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pool_max"):
        PostgresResource(database_url=db_url, pool_max=1)
    assert PostgresResource(database_url=db_url, pool_max=2).pool_max == 2
