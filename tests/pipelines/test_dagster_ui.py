"""The Dagster UI as an operator sees it, in headless Chromium: the asset graph, the last run's success, the
ingest's decision counts, and a rejected and a failed image with their reasons. Screenshots land in the test's tmp dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from PIL import Image

from covr_core.platform.settings import Settings
from covr_pipelines.cli import _dagster_instance
from covr_pipelines.definitions import INGEST_JOB, build_definitions
from covr_pipelines.defs.ingestion.sensors import ingest_run_request
from covr_pipelines.sample_photos import jpeg_bytes
from tests.photos import cover_photo
from tests.pipelines.ingest_runs import images_by_key, upload

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium on PATH ({', '.join(BROWSERS)}) on CI: .ci/run should have installed chromium")
        pytest.skip(f"no Chromium found on PATH (looked for {', '.join(BROWSERS)}): apt-get install chromium, "
                    "as .ci/run does")
    return found


def _dismiss_welcome(page) -> None:
    """A fresh instance greets a first visit with a newsletter dialog; an operator skips it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
    except Exception:  # noqa: BLE001 - not shown: nothing to dismiss
        return
    skip.click()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sample(conn, catalog, tmp_path, db_url, user):
    """A small ingest through the real job into a persistent instance: one cover accepted, one 1x1 JPEG
    rejected, and one upload failed (listed, then gone before the run read it). Returns (settings, the rejected
    key, the failed key)."""
    settings = Settings(home=tmp_path / "covr", database_url=db_url)
    defs = build_definitions(settings)
    store = defs.resources["object_store"].store()
    alice = user("alice")
    good = upload(store, alice, cover_photo(catalog[0], seed=1))
    hostile = upload(store, alice, jpeg_bytes(Image.new("RGB", (1, 1), (200, 10, 10))))
    gone = f"uploads/{alice}/{uuid.uuid4()}.jpg"
    with _dagster_instance(settings.dagster_home) as instance:
        result = defs.resolve_job_def(INGEST_JOB).execute_in_process(
            run_config=ingest_run_request([good, hostile, gone]).run_config, instance=instance)
    assert result.success
    rows = images_by_key(conn, [good, hostile])
    assert rows[good]["status"] == "accepted" and "1x1 pixels" in rows[hostile]["rejection_reason"]
    failure = conn.execute("select reason from ingest.failure where object_key = %s", (gone,)).fetchone()
    assert "ObjectNotFound" in failure["reason"]
    return settings, hostile, gone


@pytest.fixture
def webserver(sample, tmp_path):
    settings, _, _ = sample
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVR_", "DATABASE_URL", "DAGSTER_HOME"))}
    env |= {"COVR_HOME": str(settings.home), "DATABASE_URL": settings.database_url,
            "DAGSTER_HOME": str(settings.dagster_home)}
    log = open(tmp_path / "webserver.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "covr_pipelines.definitions", "-a", "defs",
         "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Dagster webserver did not answer within 90 s"
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_operator_sees_the_graph_the_run_the_counts_and_the_rejected_and_failed_images(sample, webserver, tmp_path):
    executable = _browser()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    _, hostile, gone = sample
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 2800, "height": 1100})
        page.set_default_timeout(60_000)
        try:
            # The asset graph of the ingest job: the chain from upload to vectors.
            page.goto(f"{webserver}/jobs")
            _dismiss_welcome(page)
            page.get_by_text(INGEST_JOB, exact=True).first.click()
            # The graph draws one node per context (asset group), materialised; it opens centred on the first, so
            # the last (vectors) lies past the panel's edge and only the job's "View 4 assets" counts it.
            for group in ("ingestion", "identification", "dedup"):
                page.get_by_text(group, exact=True).first.wait_for()
            page.get_by_text("View 4 assets").wait_for()
            page.screenshot(path=shots / "asset-graph.png")

            # The last run: the ingest job, succeeded.
            page.goto(f"{webserver}/runs")
            page.get_by_text(INGEST_JOB).first.wait_for()
            page.get_by_text("Success", exact=True).first.wait_for()
            page.screenshot(path=shots / "runs.png")

            # uploaded_images' latest materialisation: the decision counts, the rejected image and the failed one,
            # each with its reason.
            page.goto(f"{webserver}/assets/uploaded_images?view=events")
            for label in ("accepted", "rejected", "failed", "rejected_and_failed"):
                page.get_by_text(label, exact=True).first.wait_for()
            page.get_by_text("1x1 pixels").first.wait_for()
            page.get_by_text(hostile).first.wait_for()
            page.get_by_text(gone).first.wait_for()
            page.get_by_text("ObjectNotFound").first.wait_for()
            page.screenshot(path=shots / "uploaded-images.png", full_page=True)
        except Exception:
            page.screenshot(path=shots / "failure.png", full_page=True)
            raise
        finally:
            browser.close()

    assert sorted(p.name for p in shots.iterdir()) == ["asset-graph.png", "runs.png", "uploaded-images.png"]
