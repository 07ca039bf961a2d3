"""What an identified photo means for the catalog: the dedup decision policy, as one pure function."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    phash_copy_distance: int = 6
    embedding_same_cover: float = 0.95


@dataclass(frozen=True)
class ImageMatch:
    """An earlier accepted image near this one (pHash distance or cover similarity) and its copy, if any."""

    image_id: str
    distance: int | None = None
    copy_id: str | None = None
    book_id: str | None = None
    holder_id: str | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class HeldCopy:
    copy_id: str
    holder_id: str
    uploader_has_accepted_request: bool = False


@dataclass(frozen=True)
class DedupEvidence:
    """Everything the policy looks at for one accepted image; stored with the decision."""

    image_id: str
    uploader_id: str
    exact_match_image_id: str | None
    phash_matches: tuple[ImageMatch, ...]  # sorted by distance
    identified_book_id: str | None
    identification_source: str | None  # isbn | ocr | embedding
    book_in_catalog: bool
    uploader_copy_id: str | None  # the uploader's own copy of the identified book
    other_copies: tuple[HeldCopy, ...]  # copies of the identified book held by others
    can_create_book: bool  # identified by ISBN (provider or provisional metadata) or confident OCR
    embedding_matches: tuple[ImageMatch, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Outcome:
    """The decision, the action it implies, and the rule that fired."""

    decision: str
    match_reason: str
    rule: int
    action: str  # none | attach | create_copy | create_book_and_copy | suspect_exchange
    matched_copy_id: str | None = None
    matched_image_id: str | None = None
    suspected_holder_id: str | None = None


def decide(ev: DedupEvidence) -> Outcome:
    """Apply the rules in order; the first that holds decides (see README, "Dedup decisions")."""
    # 1. The same bytes were ingested before: nothing new happened.
    if ev.exact_match_image_id:
        return Outcome("ignore", "exact_hash", 1, "none", matched_image_id=ev.exact_match_image_id)

    # 2./3. pHash near-identity with an image already attached to a copy means the same photo,
    # re-encoded or forwarded: the uploader's own copy again, or someone else's copy on the move.
    near = [
        m
        for m in ev.phash_matches
        if m.copy_id and m.distance <= ev.thresholds.phash_copy_distance and not contradicted(ev, m)
    ]
    if near:
        mine = [m for m in near if m.holder_id == ev.uploader_id]
        if mine:
            m = mine[0]
            return Outcome("existing_copy", "phash_match", 2, "attach", m.copy_id, m.image_id)
        m = near[0]
        return Outcome(
            "exchange_suspected", "phash_match", 3, "suspect_exchange", m.copy_id, m.image_id, m.holder_id
        )

    ev = _with_same_cover(ev)
    reason = identification_match_reason(ev.identification_source)

    if ev.identified_book_id and ev.book_in_catalog:
        # 4. A new photo of a book the uploader already holds.
        if ev.uploader_copy_id:
            return Outcome("existing_copy", reason, 4, "attach", ev.uploader_copy_id)
        # 5. Someone else holds it and agreed to hand it to the uploader: it has probably changed hands.
        accepted = [c for c in ev.other_copies if c.uploader_has_accepted_request]
        if accepted:
            c = accepted[0]
            return Outcome("exchange_suspected", reason, 5, "suspect_exchange", c.copy_id, None, c.holder_id)
        # 6. The book is known and the uploader has none: a new physical copy.
        return Outcome("new_copy", reason, 6, "create_copy")

    # 7. Identified but not in the catalog yet.
    if ev.identification_source and ev.can_create_book:
        return Outcome("new_book", reason, 7, "create_book_and_copy")

    # 8. Nothing identifies a book: keep the image for review.
    return Outcome("ignore", "none", 8, "none")


def _with_same_cover(ev: DedupEvidence) -> DedupEvidence:
    """Nothing else named a book, but the cover is the same as a copy's (CLIP similarity at or above
    the threshold): that copy's book is the candidate."""
    if ev.identification_source is not None:
        return ev
    same = [
        m for m in ev.embedding_matches
        if m.book_id and (m.similarity or 0.0) >= ev.thresholds.embedding_same_cover
    ]
    if not same:
        return ev
    book_id = same[0].book_id
    mine = next((m.copy_id for m in same if m.book_id == book_id and m.holder_id == ev.uploader_id), None)
    return replace(ev, identified_book_id=book_id, identification_source="embedding", book_in_catalog=True,
                   uploader_copy_id=ev.uploader_copy_id or mine)


def contradicted(ev: DedupEvidence, match: ImageMatch) -> bool:
    """A near pHash is not "the same photo" when the barcode or the cover text names another book.

    A whole-photo pHash is dominated by the table and the framing: two different books shot alike
    can land within T_copy of each other. An ISBN or title identification is stronger evidence.
    """
    return ev.identification_source in ("isbn", "ocr") and match.book_id != ev.identified_book_id


def identification_match_reason(source: str | None) -> str:
    """The match reason of rules 4-7, from the identification source.

    Match reasons say how the photo matched earlier images (exact_hash, phash_match,
    embedding_similarity) or none; an ISBN or OCR identification is not such a match, so it is
    "none" here and stays visible as the identification's `source`.
    """
    return "embedding_similarity" if source == "embedding" else "none"
