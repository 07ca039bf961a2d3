"""The dedup policy: one test per rule of the table, and the order in which rules win."""

from __future__ import annotations

from dataclasses import replace

import pytest

from covr_core.dedup.rules import DedupEvidence, HeldCopy, ImageMatch, Thresholds, decide

ME, THEM = "user-me", "user-them"

BASE = DedupEvidence(
    image_id="img-new",
    uploader_id=ME,
    exact_match_image_id=None,
    phash_matches=(),
    identified_book_id=None,
    identification_source=None,
    book_in_catalog=False,
    uploader_copy_id=None,
    other_copies=(),
    can_create_book=False,
)


def test_rule_1_byte_identical_reupload_is_ignored():
    outcome = decide(replace(BASE, exact_match_image_id="img-old"))
    assert (outcome.decision, outcome.match_reason, outcome.rule) == ("ignore", "exact_hash", 1)
    assert outcome.matched_image_id == "img-old"


def test_rule_2_near_identical_photo_of_my_own_copy():
    near = ImageMatch("img-old", distance=3, copy_id="copy-mine", book_id="b", holder_id=ME)
    outcome = decide(replace(BASE, phash_matches=(near,)))
    assert (outcome.decision, outcome.match_reason, outcome.rule) == ("existing_copy", "phash_match", 2)
    assert (outcome.matched_copy_id, outcome.action) == ("copy-mine", "attach")


def test_rule_3_forwarded_photo_of_someone_elses_copy():
    near = ImageMatch("img-theirs", distance=5, copy_id="copy-theirs", book_id="b", holder_id=THEM)
    outcome = decide(replace(BASE, phash_matches=(near,)))
    assert (outcome.decision, outcome.match_reason, outcome.rule) == ("exchange_suspected", "phash_match", 3)
    assert outcome.suspected_holder_id == THEM


def test_phash_beyond_the_threshold_or_without_a_copy_does_not_match():
    far = ImageMatch("img-far", distance=7, copy_id="copy-theirs", holder_id=THEM)
    loose = ImageMatch("img-loose", distance=1, copy_id=None)
    outcome = decide(replace(BASE, phash_matches=(loose, far), thresholds=Thresholds(phash_copy_distance=6)))
    assert outcome.rule == 8


def test_rule_4_identified_book_i_already_hold():
    ev = replace(BASE, identified_book_id="b", identification_source="isbn", book_in_catalog=True,
                 uploader_copy_id="copy-mine")
    outcome = decide(ev)
    assert (outcome.decision, outcome.match_reason, outcome.rule) == ("existing_copy", "none", 4)
    assert outcome.matched_copy_id == "copy-mine"


def test_rule_5_book_held_by_someone_who_accepted_my_request():
    ev = replace(BASE, identified_book_id="b", identification_source="ocr", book_in_catalog=True,
                 other_copies=(HeldCopy("copy-a", "user-a"), HeldCopy("copy-b", THEM, True)))
    outcome = decide(ev)
    assert (outcome.decision, outcome.rule, outcome.matched_copy_id) == ("exchange_suspected", 5, "copy-b")
    assert outcome.suspected_holder_id == THEM


def test_rule_6_known_book_without_my_copy_is_a_new_copy():
    ev = replace(BASE, identified_book_id="b", identification_source="isbn", book_in_catalog=True,
                 other_copies=(HeldCopy("copy-a", THEM),))
    outcome = decide(ev)
    assert (outcome.decision, outcome.rule, outcome.action) == ("new_copy", 6, "create_copy")


def test_rule_7_identified_book_missing_from_the_catalog_is_a_new_book():
    ev = replace(BASE, identification_source="isbn", can_create_book=True)
    outcome = decide(ev)
    assert (outcome.decision, outcome.rule, outcome.action) == ("new_book", 7, "create_book_and_copy")


@pytest.mark.parametrize("source, reason", [("isbn", "none"), ("ocr", "none"), ("embedding", "embedding_similarity")])
def test_match_reason_of_an_identification_stays_in_the_contract(source, reason):
    ev = replace(BASE, identified_book_id="b", identification_source=source, book_in_catalog=True)
    assert decide(ev).match_reason == reason


def test_rule_8_nothing_identified_is_ignored_for_review():
    outcome = decide(BASE)
    assert (outcome.decision, outcome.match_reason, outcome.rule) == ("ignore", "none", 8)


def test_exact_hash_wins_over_everything():
    near = ImageMatch("img-old", distance=0, copy_id="copy-mine", holder_id=ME)
    ev = replace(BASE, exact_match_image_id="img-old", phash_matches=(near,), identified_book_id="b",
                 identification_source="isbn", book_in_catalog=True, uploader_copy_id="copy-mine")
    assert decide(ev).rule == 1


def test_my_copy_wins_over_a_closer_match_of_someone_elses():
    theirs = ImageMatch("img-theirs", distance=1, copy_id="copy-theirs", holder_id=THEM)
    mine = ImageMatch("img-mine", distance=4, copy_id="copy-mine", holder_id=ME)
    outcome = decide(replace(BASE, phash_matches=(theirs, mine)))
    assert (outcome.rule, outcome.matched_copy_id) == (2, "copy-mine")


def test_a_near_phash_of_another_book_does_not_override_the_barcode():
    # Two different covers shot on the same table can hash within T_copy of each other.
    other = ImageMatch("img-other", distance=4, copy_id="copy-x", book_id="book-other", holder_id=ME)
    ev = replace(BASE, phash_matches=(other,), identified_book_id="book-b", identification_source="isbn",
                 book_in_catalog=True)
    assert (decide(ev).decision, decide(ev).rule) == ("new_copy", 6)
    unknown = replace(BASE, phash_matches=(other,), identification_source="isbn", can_create_book=True)
    assert decide(unknown).decision == "new_book"
    same_book = replace(ev, phash_matches=(replace(other, book_id="book-b"),))
    assert (decide(same_book).decision, decide(same_book).rule) == ("existing_copy", 2)


def test_the_same_cover_by_embedding_names_the_book_when_nothing_else_does():
    mine = ImageMatch("img-cover", copy_id="copy-mine", book_id="book-b", holder_id=ME, similarity=0.97)
    outcome = decide(replace(BASE, embedding_matches=(mine,)))
    assert (outcome.decision, outcome.match_reason, outcome.matched_copy_id) == (
        "existing_copy", "embedding_similarity", "copy-mine")
    theirs = replace(mine, copy_id="copy-theirs", holder_id=THEM)
    assert decide(replace(BASE, embedding_matches=(theirs,))).decision == "new_copy"
    weak = replace(mine, similarity=0.93)
    assert decide(replace(BASE, embedding_matches=(weak,))).rule == 8
