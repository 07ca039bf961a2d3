"""Which book each accepted photo shows: ISBN barcode, OCR text, title match and cover similarity."""


import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg

from covr_core.dedup.failures import describe_failure, is_database_outage, resolve_failure
from covr_core.dedup.ingest import batch_images, record_identification
from covr_core.identification.recognition import Reading, identify_reading, known_books, read_photo
from covr_core.media.imaging import full_resolution_loader, load_for_recognition, normalized_jpeg
from covr_core.media.rectify import rectified
from covr_core.media.storage import derived_key
from covr_core.vectors.stores import CoverPoint, PgVectorStore
from covr_pipelines.defs.ingestion.assets import batch_run_id, fail_image
from covr_pipelines.resources import (
    BarcodeResource,
    EmbedderResource,
    IngestPolicyResource,
    MetadataProviderResource,
    ObjectStoreResource,
    OcrResource,
    PostgresResource,
    VectorStoreResource,
)

GROUP = "identification"
# Images per chunk; at most three chunks are in memory at once (a half-resolution RGB decode of 12 MP is ~9 MB).
CHUNK = 8


@dataclass
class Seen:
    """What the recognisers read from one photo, before the catalog is consulted."""

    image: dict
    reading: Reading | None = None
    rgb: object | None = None
    timings_ms: dict = field(default_factory=dict)
    error: BaseException | None = None  # what stopped the recognisers on this photo


def _read_isolated(image: dict, *args) -> Seen:
    """`_read`, but one photo's error (a store fault, a recogniser crash) is kept with it instead of raised."""
    try:
        return _read(image, *args)
    except Exception as exc:  # noqa: BLE001 - recorded as this image's failure by the caller
        return Seen(image=image, error=exc)


def _read(image: dict, store, ocr: OcrResource, keep_rgb: bool, is_known) -> Seen:
    """Decode once at recognition scale; share it between the derivative, barcode, OCR and CLIP."""
    seen = Seen(image=image)
    t0 = time.perf_counter()
    data = store.get(image["object_key"])
    rgb = load_for_recognition(data, mode="RGB")
    store.put(derived_key(image["object_key"], "normalized"), normalized_jpeg(rgb), content_type="image/jpeg")
    t1 = time.perf_counter()
    seen.reading = read_photo(rgb, ocr.get_engine(), is_known=is_known,
                              full_resolution=full_resolution_loader(data, rgb))
    if keep_rgb:
        # The embedding sees the book, flattened, when its outline was found; the whole frame otherwise.
        seen.rgb = rectified(rgb, seen.reading.cover) if seen.reading.cover is not None else rgb
    seen.timings_ms = {"decode": round((t1 - t0) * 1e3, 1), **seen.reading.timings_ms}
    return seen


@dg.asset(group_name=GROUP, owners=[f"team:{GROUP}"], kinds={"python", "postgres", "onnx"}, deps=["uploaded_images"])
def book_identifications(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
    ocr: OcrResource,
    barcode: BarcodeResource,
    metadata_provider: MetadataProviderResource,
    embedder: EmbedderResource,
    vectors: VectorStoreResource,
    policy: IngestPolicyResource,
) -> dg.MaterializeResult:
    """Identify the book in each accepted photo and store the evidence, with a BookIdentified event."""
    store = object_store.store()
    model = embedder.get_embedder()
    if model is None:
        context.log.warning(f"cover embeddings off: {embedder.disabled_reason}")
    vector_store = vectors.get_store(postgres) if model is not None else None
    by_source = {"isbn": 0, "ocr": 0, "embedding": 0, "none": 0}
    failed = []
    run_id = batch_run_id(context)
    stage_ms = {"decode": 0.0, "barcode": 0.0, "cover": 0.0, "ocr": 0.0, "embed": 0.0}

    with postgres.connection() as conn:
        images = batch_images(conn, run_id, missing="identification")
        openlibrary = metadata_provider.openlibrary(postgres.connection)

        def is_known(isbn: str) -> bool:
            with postgres.connection() as own:  # called from worker threads: a connection each
                return bool(known_books(own, [isbn]))

        def embed(seen: list[Seen]) -> dict:
            """Embed a chunk's covers and store the vectors; runs beside the reading of the next chunk."""
            seen = [s for s in seen if s.error is None]
            if model is None or not seen:
                return {}
            t0 = time.perf_counter()
            embedded = model.embed([s.rgb for s in seen])
            stage_ms["embed"] += (time.perf_counter() - t0) * 1e3
            points = [
                CoverPoint(image_id=str(s.image["image_id"]), vector=vec, copy_id=None, book_id=None,
                           kind=s.image["kind"], sha256=s.image["sha256"], model=model.model_id)
                for s, vec in zip(seen, embedded)
            ]
            # Postgres keeps every embedding (the system of record); Qdrant is synced from it.
            PgVectorStore(postgres.connection).upsert(points)
            return {p.image_id: p.vector for p in points}

        def embed_isolated(seen: list[Seen]) -> dict:
            # Cover similarity is one signal among several: without it identification still stands.
            try:
                return embed(seen)
            except Exception as exc:
                if is_database_outage(exc):
                    raise
                reason = describe_failure("embedding", exc)
                context.log.warning(f"cover embeddings of {len(seen)} images skipped: {reason}")
                return {}

        def fail(s: Seen, exc: BaseException) -> None:
            failed.append(fail_image(context, conn, s.image, "identification", exc, run_id))

        def finish(seen: list[Seen], vectors_by_image: dict) -> None:
            for s in seen:
                s.rgb = None
                if s.error is not None:
                    if is_database_outage(s.error):
                        raise s.error
                    fail(s, s.error)
                    continue
                for k, v in s.timings_ms.items():
                    stage_ms[k] = stage_ms.get(k, 0.0) + v
                try:
                    ident = _identify(conn, s, openlibrary, vector_store, vectors_by_image, policy)
                    with conn.transaction():
                        record_identification(conn, str(s.image["image_id"]), run_id, ident)
                        resolve_failure(conn, s.image["object_key"], "identification")
                except Exception as exc:
                    if is_database_outage(exc):
                        raise
                    fail(s, exc)
                    continue
                by_source[ident.source or "none"] += 1
                context.log.info(
                    f"image {s.image['image_id']} ({s.image['object_key']}): "
                    + (f"{ident.source} -> isbn {ident.isbn13}, {ident.title!r}, confidence {ident.confidence}"
                       if ident.source else "no book identified")
                )

        # The recognisers never wait: the next chunk is being read while this one is embedded (CLIP shares the
        # cores instead of taking turns) and the one before is identified and written. A chunk is identified once
        # its own embeddings are stored.
        chunks = [images[start : start + CHUNK] for start in range(0, len(images), CHUNK)]
        pending = None
        with ThreadPoolExecutor(max_workers=policy.workers) as pool, ThreadPoolExecutor(max_workers=1) as clip:
            def read(chunk: list[dict]) -> list:
                return [pool.submit(_read_isolated, im, store, ocr, model is not None, is_known) for im in chunk]

            reading = read(chunks[0]) if chunks else []
            upcoming: list = []
            try:
                for k in range(len(chunks)):
                    # Queued behind this chunk's photos, so the workers go straight on to the next chunk.
                    upcoming = read(chunks[k + 1]) if k + 1 < len(chunks) else []
                    seen = [f.result() for f in reading]
                    if pending is not None:
                        finish(pending[0], pending[1].result())
                    pending = (seen, clip.submit(embed_isolated, seen))
                    reading = upcoming
                if pending is not None:
                    finish(pending[0], pending[1].result())
            except BaseException:
                for f in reading + upcoming:  # a database outage: photos not yet started are not read for nothing
                    f.cancel()
                raise

    n = max(1, sum(by_source.values()))
    return dg.MaterializeResult(
        metadata={
            "identified": sum(by_source.values()) - by_source["none"],
            "failed": len(failed),
            "failures": dg.MetadataValue.json(failed),
            **{f"by_{k}": v for k, v in by_source.items()},
            **{f"ms_per_image_{k}": round(v / n, 1) for k, v in stage_ms.items()},
            "embeddings": "on" if model is not None else f"off: {embedder.disabled_reason}",
        }
    )


def _identify(conn, seen: Seen, openlibrary, vector_store, vectors_by_image, policy):
    image_id = str(seen.image["image_id"])
    hits = []
    if vector_store is not None and image_id in vectors_by_image:
        hits = vector_store.search(vectors_by_image[image_id], limit=5, exclude_image_ids=[image_id])
    ident = identify_reading(
        conn, seen.reading, lookup=openlibrary.lookup if openlibrary is not None else None,
        embedding_hits=hits, embedding_min_score=policy.embedding_identify,
    )
    ident.evidence["timings_ms"] = seen.timings_ms
    if hits:
        ident.evidence["embedding_candidates"] = [
            {"image_id": h.image_id, "book_id": h.book_id, "score": round(h.score, 4)} for h in hits
        ]
    return ident
