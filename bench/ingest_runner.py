"""The whole ingest job timed on a scratch home: shared by bench/ingest.py and bench/identify.py, not a bench itself."""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IngestTiming:
    images: int
    seconds: float
    cpu_seconds: float  # this process's threads; the Postgres server's own CPU is not counted
    steps: list[tuple[str, float]]

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def time_ingest_job(photos: list[bytes], batch: int, *, warm_up: int = 8, catalog: list[tuple] = (),
                    **settings) -> IngestTiming:
    """One warm-up run of `warm_up` images, then one timed Dagster run of `batch` distinct uploads.

    Each upload is a photo of `photos` (round robin) with 4 distinct bytes appended, so every image goes the whole
    way instead of stopping at exact_hash. `catalog` rows (title, authors, isbn13) are known books; `settings`
    override Settings fields (clip_allow_random=..., ...)."""
    import dagster as dg

    from covr_core.contact.accounts import ensure_user
    from covr_core.platform.db import Database
    from covr_core.platform.migrations import migrate
    from covr_core.platform.settings import Settings
    from covr_pipelines.definitions import INGEST_JOB, build_definitions
    from covr_pipelines.defs.ingestion.sensors import ingest_run_request

    with tempfile.TemporaryDirectory() as home:
        config = Settings(home=Path(home), ingest_batch_size=batch, **settings)
        db = Database.from_settings(config)
        try:
            with db.connection() as conn:
                migrate(conn)
                with conn.cursor() as cur:
                    cur.executemany("insert into catalog.book (title, authors, isbn13) values (%s, %s, %s)",
                                    list(catalog))
                user_id = ensure_user(conn, "bench")
            defs = build_definitions(config.model_copy(update={"database_url": db.url}))
            job = defs.resolve_job_def(INGEST_JOB)
            store = defs.resources["object_store"].store()
            instance = dg.DagsterInstance.ephemeral()

            def run(count: int, offset: int) -> tuple[float, float, str]:
                keys = []
                for i in range(count):
                    keys.append(f"uploads/{user_id}/{offset + i:08d}.jpg")
                    store.put(keys[-1], photos[i % len(photos)] + (offset + i).to_bytes(4, "big"))
                started, cpu = time.perf_counter(), _cpu_seconds()
                result = job.execute_in_process(
                    run_config={**ingest_run_request(keys).run_config,
                                "loggers": {"console": {"config": {"log_level": "ERROR"}}}},
                    instance=instance,
                )
                assert result.success
                return time.perf_counter() - started, _cpu_seconds() - cpu, result.run_id

            if warm_up:
                run(min(warm_up, batch), 0)
            seconds, cpu, run_id = run(batch, 1000)
            steps = [(s.step_key, s.end_time - s.start_time) for s in instance.get_run_step_stats(run_id)]
        finally:
            db.close()
    return IngestTiming(batch, seconds, cpu, steps)


def print_steps(timing: IngestTiming) -> None:
    for key, seconds in timing.steps:
        print(f"  {key:45} {seconds:6.2f} s")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
