"""Ingest's writes to the system of record: each image's row, identification and decision, with its event."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from covr_core.catalog.books import create_book_from_identification
from covr_core.catalog.copies import create_copy
from covr_core.dedup.rules import DedupEvidence, HeldCopy, ImageMatch, Outcome, Thresholds
from covr_core.exchange import suspected
from covr_core.shared.events import BookIdentified, DedupResolved, ImageUploaded
from covr_core.identification.identify import Identification
from covr_core.ledger import hooks
from covr_core.ledger.chain import Evidence
from covr_core.shared.outbox import append_event


@dataclass(frozen=True)
class ImageRecord:
    object_key: str
    etag: str | None
    uploader_id: str
    byte_size: int
    status: str  # accepted | rejected
    rejection_reason: str | None = None
    sha256: str | None = None
    phash: int | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    normalized_key: str | None = None
    thumbnail_key: str | None = None


def existing_image(conn: psycopg.Connection, object_key: str) -> dict | None:
    return conn.execute(
        "select image_id, etag, status, rejection_reason from media.image where object_key = %s", (object_key,)
    ).fetchone()


def refuse_overwrite(conn: psycopg.Connection, object_key: str, etag: str, image_id: str) -> tuple[str, bool]:
    """Record that `object_key` was overwritten after it was ingested; the first version stays the evidence.

    Returns (reason, first_time): a refusal already recorded for this etag is not recorded twice.
    """
    reason = (f"{object_key} was overwritten (etag {etag}) after image {image_id} was ingested from it; "
              f"the first version is kept as evidence: upload the new photo under a new key")
    with conn.transaction():
        row = conn.execute(
            """
            insert into ingest.overwrite_refusal (object_key, etag, reason) values (%s, %s, %s)
            on conflict do nothing returning object_key
            """,
            (object_key, etag, reason),
        ).fetchone()
    return reason, row is not None


def record_image(conn: psycopg.Connection, rec: ImageRecord) -> tuple[str, bool]:
    """Insert the image row and, for an accepted image, its ImageUploaded event, in one transaction.

    Returns (image_id, created). An object key seen before keeps its first row: re-runs change nothing.
    """
    with conn.transaction():
        row = conn.execute(
            """
            insert into media.image (object_key, etag, uploader_id, status, rejection_reason, sha256, phash,
                                     byte_size, format, width, height, normalized_key, thumbnail_key)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (object_key) do nothing
            returning image_id
            """,
            (
                rec.object_key, rec.etag, rec.uploader_id, rec.status, rec.rejection_reason, rec.sha256, rec.phash,
                rec.byte_size, rec.format, rec.width, rec.height, rec.normalized_key, rec.thumbnail_key,
            ),
        ).fetchone()
        if row is None:
            return str(existing_image(conn, rec.object_key)["image_id"]), False
        image_id = str(row["image_id"])
        if rec.status == "accepted":
            append_event(
                conn,
                ImageUploaded(
                    image_id=image_id,
                    uploader_id=rec.uploader_id,
                    object_key=rec.object_key,
                    sha256=rec.sha256,
                    phash=rec.phash,
                ),
            )
    return image_id, True


def record_batch(conn: psycopg.Connection, run_id: str, object_keys: list[str]) -> None:
    """The batch a run works on; a re-execution (same root run id) keeps the first record."""
    with conn.transaction():
        conn.execute(
            "insert into ingest.batch (run_id, object_keys) values (%s, %s) on conflict (run_id) do nothing",
            (run_id, object_keys),
        )


def batch_images(conn: psycopg.Connection, run_id: str, *, missing: str) -> list[dict]:
    """Accepted images of this run's batch that still lack a `missing` result, in upload order.

    Dedup takes only identified images: one whose identification failed waits for its retry, undecided.
    With no batch for the run (an asset materialised on its own), every accepted image lacking it.
    """
    table = {"identification": "ingest.identification", "dedup": "ingest.dedup_result"}[missing]
    ready = ("and exists (select 1 from ingest.identification d where d.image_id = s.image_id)"
             if missing == "dedup" else "")
    return conn.execute(
        f"""
        with batch_keys as (
            select unnest(object_keys) as object_key, generate_subscripts(object_keys, 1) as position
            from ingest.batch where run_id = %(run_id)s
        ),
        scope as (
            select i.*, coalesce(k.position, 0) as position
            from media.image i
            left join batch_keys k on k.object_key = i.object_key
            where i.status = 'accepted'
              and (k.object_key is not null or not exists (select 1 from batch_keys))
        )
        select * from scope s
        where not exists (select 1 from {table} r where r.image_id = s.image_id) {ready}
        order by s.position, s.created_at, s.image_id
        """,
        {"run_id": run_id},
    ).fetchall()


def books_by_isbns(conn: psycopg.Connection, isbns: list[str]) -> dict[str, dict]:
    if not isbns:
        return {}
    rows = conn.execute(
        "select book_id, isbn13, title, authors from catalog.book where isbn13 = any(%s)", (isbns,)
    ).fetchall()
    return {r["isbn13"]: {"book_id": str(r["book_id"]), "title": r["title"], "authors": r["authors"]} for r in rows}


def record_identification(conn: psycopg.Connection, image_id: str, run_id: str, ident: Identification) -> bool:
    """Store the identification and, when a source identified something, a BookIdentified event."""
    with conn.transaction():
        row = conn.execute(
            """
            insert into ingest.identification (image_id, run_id, book_id, isbn13, title, confidence, source, evidence)
            values (%s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (image_id) do nothing
            returning image_id
            """,
            (image_id, run_id, ident.book_id, ident.isbn13, ident.title, ident.confidence, ident.source,
             Jsonb(ident.evidence)),
        ).fetchone()
        if row is None:
            return False
        if ident.source:
            append_event(
                conn,
                BookIdentified(
                    image_id=image_id, run_id=run_id, book_id=ident.book_id, confidence=ident.confidence,
                    source=ident.source,
                ),
            )
    return True


def lock_uploader(conn: psycopg.Connection, uploader_id: str) -> None:
    """Serialise dedup for one member until the transaction ends, so two runs cannot both create their copy.

    Take it first in the transaction, before any read it protects. A transaction takes one uploader's lock
    only, so concurrent runs over the same members in any order cannot deadlock on these locks.
    """
    conn.execute("select pg_advisory_xact_lock(hashtextextended('covr.dedup.uploader:' || %s, 0))", (uploader_id,))


def is_decided(conn: psycopg.Connection, image_id: str) -> bool:
    return conn.execute("select 1 from ingest.dedup_result where image_id = %s", (image_id,)).fetchone() is not None


def gather_evidence(
    conn: psycopg.Connection,
    image: dict,
    identification: dict,
    phash_matches: list,
    thresholds: Thresholds,
    embedding_matches: tuple[ImageMatch, ...] = (),
) -> DedupEvidence:
    """Read what the policy needs about one image from the current state of the catalog."""
    image_id, uploader_id = str(image["image_id"]), str(image["uploader_id"])
    exact = conn.execute(
        """
        select image_id from media.image
        where sha256 = %s and status = 'accepted' and image_id <> %s
          and (created_at, image_id) < (%s, %s)
        order by created_at, image_id limit 1
        """,
        (image["sha256"], image_id, image["created_at"], image_id),
    ).fetchone()
    matches = _attach_copies(conn, [m for m in phash_matches if str(m.image_id) != image_id])

    book_id = identification.get("book_id")
    if book_id is None and identification.get("isbn13"):
        known = books_by_isbns(conn, [identification["isbn13"]]).get(identification["isbn13"])
        book_id = known["book_id"] if known else None
    uploader_copy_id, others = None, ()
    if book_id:
        copies = conn.execute(
            """
            select c.copy_id, c.current_holder_id,
                   exists (select 1 from exchange.request r
                           where r.copy_id = c.copy_id and r.requester_id = %(uploader)s
                             and r.status = 'accepted') as accepted
            from catalog.copy c
            where c.book_id = %(book)s and c.status not in ('withdrawn', 'lost')
            order by c.created_at, c.copy_id
            """,
            {"uploader": uploader_id, "book": book_id},
        ).fetchall()
        mine = [c for c in copies if str(c["current_holder_id"]) == uploader_id]
        uploader_copy_id = str(mine[0]["copy_id"]) if mine else None
        others = tuple(
            HeldCopy(str(c["copy_id"]), str(c["current_holder_id"]), c["accepted"])
            for c in copies
            if str(c["current_holder_id"]) != uploader_id
        )
    source = identification.get("source")
    return DedupEvidence(
        image_id=image_id,
        uploader_id=uploader_id,
        exact_match_image_id=str(exact["image_id"]) if exact else None,
        phash_matches=tuple(matches),
        identified_book_id=str(book_id) if book_id else None,
        identification_source=source,
        book_in_catalog=book_id is not None,
        uploader_copy_id=uploader_copy_id,
        other_copies=others,
        can_create_book=source in ("isbn", "ocr") and bool(identification.get("isbn13") or identification.get("title")),
        embedding_matches=embedding_matches,
        thresholds=thresholds,
    )


def cover_matches(conn: psycopg.Connection, image_id: str, min_similarity: float, limit: int = 5):
    """Images attached to copies whose cover embedding is at least `min_similarity` (cosine) to this one's."""
    rows = conn.execute(
        """
        select other.image_id, 1 - (other.embedding <=> mine.embedding) as similarity,
               i.copy_id, c.book_id, c.current_holder_id
        from media.cover_embedding mine
        cross join lateral (
            select e.image_id, e.embedding from media.cover_embedding e
            where e.image_id <> mine.image_id and e.copy_id is not null
            order by e.embedding <=> mine.embedding
            limit %(limit)s
        ) other
        join media.image i on i.image_id = other.image_id
        join catalog.copy c on c.copy_id = i.copy_id
        where mine.image_id = %(image_id)s
        """,
        {"image_id": image_id, "limit": limit},
    ).fetchall()
    return tuple(
        ImageMatch(image_id=str(r["image_id"]), copy_id=str(r["copy_id"]), book_id=str(r["book_id"]),
                   holder_id=str(r["current_holder_id"]), similarity=round(float(r["similarity"]), 4))
        for r in rows
        if r["similarity"] >= min_similarity
    )


def _attach_copies(conn: psycopg.Connection, near: list) -> list[ImageMatch]:
    if not near:
        return []
    rows = conn.execute(
        """
        select i.image_id, i.copy_id, c.book_id, c.current_holder_id
        from media.image i left join catalog.copy c on c.copy_id = i.copy_id
        where i.image_id = any(%s)
        """,
        ([str(m.image_id) for m in near],),
    ).fetchall()
    by_id = {str(r["image_id"]): r for r in rows}
    out = []
    for m in near:
        r = by_id.get(str(m.image_id), {})
        out.append(
            ImageMatch(
                image_id=str(m.image_id),
                distance=int(m.distance),
                copy_id=_str(r.get("copy_id")),
                book_id=_str(r.get("book_id")),
                holder_id=_str(r.get("current_holder_id")),
            )
        )
    return sorted(out, key=lambda m: (m.distance, m.image_id))


def _str(value) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Applied:
    decision: str
    match_reason: str
    book_id: str | None
    copy_id: str | None


def apply_outcome(
    conn: psycopg.Connection,
    *,
    image: dict,
    identification: dict,
    evidence: DedupEvidence,
    outcome: Outcome,
    run_id: str,
) -> Applied:
    """Carry out the decision (create book/copy, attach the image, suspect an exchange) and record it.

    The caller holds the transaction and took `lock_uploader` in it before gathering the evidence.
    """
    image_id, uploader_id = str(image["image_id"]), str(image["uploader_id"])
    book_id = evidence.identified_book_id
    copy_id = outcome.matched_copy_id

    if outcome.action == "create_book_and_copy":
        book_id = create_book_from_identification(conn, identification)
        copy_id = create_copy(conn, book_id=book_id, owner_id=uploader_id)
    elif outcome.action == "create_copy":
        copy_id = create_copy(conn, book_id=book_id, owner_id=uploader_id)
    elif outcome.action == "suspect_exchange":
        suspected.suspect(conn, image_id, outcome.matched_copy_id, uploader_id, outcome.suspected_holder_id)
    if outcome.action in ("create_copy", "create_book_and_copy"):
        # The copy's first ledger entry, with the photo it was created from, in this same transaction.
        hooks.on_copy_created(conn, copy_id=copy_id, owner_id=uploader_id, book_id=book_id, run_id=run_id,
                              decision=outcome.decision,
                              evidence=Evidence(image_id, image.get("sha256"), image.get("phash")))
    if copy_id and not book_id:
        book_id = _str(conn.execute("select book_id from catalog.copy where copy_id = %s", (copy_id,)).fetchone()["book_id"])
    if outcome.action in ("attach", "create_copy", "create_book_and_copy"):
        conn.execute("update media.image set copy_id = %s where image_id = %s", (copy_id, image_id))
        conn.execute("update media.cover_embedding set copy_id = %s, book_id = %s where image_id = %s",
                     (copy_id, book_id, image_id))

    recorded_copy = copy_id if outcome.action in ("attach", "create_copy", "create_book_and_copy") else None
    conn.execute(
        """
        insert into ingest.dedup_result (image_id, run_id, decision, match_reason, book_id, copy_id,
                                         matched_copy_id, matched_image_id, evidence)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            image_id, run_id, outcome.decision, outcome.match_reason, book_id, recorded_copy,
            outcome.matched_copy_id, outcome.matched_image_id,
            Jsonb({"rule": outcome.rule, "action": outcome.action, **evidence.as_json()}),
        ),
    )
    append_event(
        conn,
        DedupResolved(
            image_id=image_id,
            decision=outcome.decision,
            matched_copy_id=outcome.matched_copy_id,
            matched_image_id=outcome.matched_image_id,
            reason=outcome.match_reason,
        ),
    )
    return Applied(outcome.decision, outcome.match_reason, book_id, recorded_copy or outcome.matched_copy_id)
