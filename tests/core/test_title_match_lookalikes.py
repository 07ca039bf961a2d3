"""Look-alike titles resolve both ways, references to other books do not pull, run-together words still match, and
editions tie: on OCR lines with heights, as the scene-text engine returns them (no pixels, so it is fast)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from covr_core.identification.identify import choose_identification
from covr_core.identification.ocr import OcrLine
from covr_core.identification.title_match import match_title, reference_lines
from covr_pipelines.hard_photos import hard_catalog
from tests.databases import scratch_database


@pytest.fixture(scope="module")
def catalog_url(admin_url, template_db):
    with scratch_database(admin_url, "covr_lookalikes", template_db) as url:
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.executemany("insert into catalog.book (title, authors, isbn13) values (%s, %s, %s)", hard_catalog())
        yield url


@pytest.fixture
def catalog(catalog_url):
    with psycopg.connect(catalog_url, row_factory=dict_row) as conn:
        yield conn


def cover(*lines: tuple[str, float]) -> list[OcrLine]:
    """OCR lines top to bottom: (text, height as a share of the photo's long side)."""
    return [OcrLine(text, 98.0, height, ((0.2, 0.1 * i), (0.8, 0.1 * i), (0.8, 0.1 * i + height),
                                          (0.2, 0.1 * i + height))) for i, (text, height) in enumerate(lines)]


def identify(conn, lines):
    evidence: dict = {}
    return choose_identification(barcode_isbn=None, ocr_isbns=[], books_by_isbn={}, embedding_hits=[],
                                 title_candidates=match_title(conn, lines, limit=6), ocr_text="",
                                 ocr_lines=lines, evidence=evidence)


@pytest.mark.parametrize(
    "lines, title",
    [
        (cover(("DUNE", 0.09), ("FRANK HERBERT", 0.035)), "Dune"),
        (cover(("DUNE", 0.08), ("MESSIAH", 0.08), ("FRANK HERBERT", 0.035)), "Dune Messiah"),
        (cover(("FRANK HERBERT", 0.03), ("CHILDREN", 0.07), ("OF DUNE", 0.07)), "Children of Dune"),
        (cover(("Clean Code", 0.07), ("Robert C. Martin", 0.03)), "Clean Code"),
        (cover(("CLEAN", 0.07), ("ARCHITECTURE", 0.07), ("ROBERT C. MARTIN", 0.03)), "Clean Architecture"),
        (cover(("The Glass", 0.07), ("Garden", 0.07), ("MAREN SOLBERG", 0.03)), "The Glass Garden"),
        (cover(("GARDEN OF", 0.07), ("GLASS", 0.07), ("Tobias Wren", 0.03)), "Garden of Glass"),
    ],
)
def test_look_alikes_resolve_both_ways(catalog, lines, title):
    ident = identify(catalog, lines)
    assert ident.title == title, ident.evidence
    assert ident.source == "ocr"


@pytest.mark.parametrize("text, title", [("THE GLASS GARDEN", "The Glass Garden"),
                                         ("GARDEN OF GLASS", "Garden of Glass")])
def test_without_an_author_only_word_order_separates_them_and_it_never_picks_the_other(catalog, text, title):
    found = match_title(catalog, cover((text, 0.07)))
    assert found[0].title == title
    assert identify(catalog, cover((text, 0.07))).title in (title, None)


def test_from_the_author_of_another_title_does_not_pull_to_it(catalog):
    lines = cover(("FROM THE AUTHOR OF DUNE MESSIAH", 0.03), ("CHILDREN", 0.08), ("OF DUNE", 0.08),
                  ("FRANK HERBERT", 0.035))
    assert identify(catalog, lines).title == "Children of Dune"
    lines = cover(("By the bestselling author of", 0.025), ("Garden of Glass", 0.025), ("THE GLASS", 0.08),
                  ("GARDEN", 0.08), ("\u201cDazzling\u201d \u2014 The Guardian", 0.02))
    assert identify(catalog, lines).title == "The Glass Garden"


def test_reference_lines_and_their_continuations():
    flags = reference_lines(["By the bestselling author of", "Garden of Glass", "SHADOW ISLAND",
                             "\u201cI could not put it down\u201d", "Lucía Ferrán"])
    assert flags == [True, True, False, True, False]


def test_dropped_spaces_case_and_accents(catalog):
    assert identify(catalog, cover(("SHADOWISLAND", 0.08), ("LUCIA FERRAN", 0.03))).title == "Shadow Island"
    assert identify(catalog, cover(("cafe eternite", 0.08), ("Amelie Durand", 0.03))).title == "Café Éternité"


def test_a_large_word_no_title_explains_loses_the_match(catalog):
    found = match_title(catalog, cover(("DUNE", 0.08), ("MESSIAH", 0.08), ("FRANK HERBERT", 0.03)))
    by_title = {c.title: c for c in found}
    assert by_title["Dune"].unexplained > 0.3 and by_title["Dune Messiah"].unexplained == 0.0


def test_editions_tie_pick_the_one_in_the_network_and_say_so(catalog):
    lines = cover(("DUNE", 0.09), ("FRANK HERBERT", 0.035))
    first = identify(catalog, lines)
    assert first.identified and first.evidence["title_match"]["ambiguous_editions"]
    assert first.confidence < first.evidence["title_match"]["best_score"]
    assert identify(catalog, lines).book_id == first.book_id  # deterministic
    other = next(e for e in first.evidence["title_match"]["editions"] if e["book_id"] != first.book_id)
    with catalog.transaction():
        user = catalog.execute("insert into contact.user (handle, display_name) values ('ed', 'Ed') "
                               "returning user_id").fetchone()
        catalog.execute("insert into catalog.copy (book_id, owner_id, current_holder_id) values (%s, %s, %s)",
                        (other["book_id"], user["user_id"], user["user_id"]))
    try:
        held = identify(catalog, lines)
        assert held.book_id == other["book_id"]
        assert "already in the network: 1 copies" in held.evidence["why"]
    finally:
        with catalog.transaction():
            catalog.execute("delete from catalog.copy")
