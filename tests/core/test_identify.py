"""Choosing one identification from barcode, printed ISBN, title match and cover similarity."""

from __future__ import annotations

from dataclasses import dataclass

from covr_core.identification.identify import choose_identification, provisional_title


@dataclass
class Candidate:
    book_id: str
    title: str
    isbn13: str | None
    score: float
    title_score: float = 0.0
    authors: tuple = ("Someone",)
    copies: int = 0


@dataclass
class Hit:
    book_id: str | None
    score: float


def choose(**kw):
    args = dict(barcode_isbn=None, ocr_isbns=[], books_by_isbn={}, title_candidates=[], embedding_hits=[],
                ocr_text="", evidence={})
    return choose_identification(**{**args, **kw})


def test_barcode_beats_every_other_source():
    ident = choose(barcode_isbn="9780306406157", ocr_isbns=["9781861972712"],
                   books_by_isbn={"9780306406157": {"book_id": "b1", "title": "Physics"}},
                   title_candidates=[Candidate("b2", "Other", None, 0.99)])
    assert (ident.source, ident.book_id, ident.isbn13, ident.confidence) == ("isbn", "b1", "9780306406157", 0.99)
    assert ident.evidence["isbn_from"] == "barcode"


def test_printed_isbn_prefers_one_the_catalog_knows():
    ident = choose(ocr_isbns=["9781861972712", "9780306406157"],
                   books_by_isbn={"9780306406157": {"book_id": "b1", "title": "Physics"}})
    assert (ident.isbn13, ident.book_id, ident.evidence["isbn_from"]) == ("9780306406157", "b1", "ocr_text")


def test_unknown_isbn_gets_a_provisional_title_from_the_ocr_text():
    ident = choose(barcode_isbn="9781861972712", ocr_text="ISBN 978-1-86197-271-2\nLanterns Over Harbour\nN. Haddad")
    assert (ident.book_id, ident.title) == (None, "Lanterns Over Harbour")


def test_title_match_needs_a_clear_lead():
    close = [Candidate("b1", "Dune", None, 0.80), Candidate("b2", "Dune Messiah", None, 0.76)]
    assert choose(title_candidates=close).source is None
    clear = [Candidate("b1", "Dune", None, 0.80), Candidate("b2", "Emma", None, 0.30)]
    assert (choose(title_candidates=clear).source, choose(title_candidates=clear).book_id) == ("ocr", "b1")


def test_a_perfect_title_without_its_author_is_enough():
    only_title = [Candidate("b1", "Rivers of Salt", None, 0.65, title_score=1.0)]
    assert choose(title_candidates=only_title).book_id == "b1"
    weak = [Candidate("b1", "Rivers of Salt", None, 0.5, title_score=0.7)]
    assert choose(title_candidates=weak).source is None


def test_two_editions_with_one_title_are_picked_deterministically_with_lower_confidence():
    editions = [Candidate("b2", "Rivers of Salt", "9781861972712", 0.95),
                Candidate("b1", "Rivers of Salt", "9780306406157", 0.95)]
    ident = choose(title_candidates=editions)
    assert (ident.source, ident.book_id) == ("ocr", "b1")  # neither in the network: the lowest ISBN
    assert ident.confidence < 0.95 and ident.evidence["title_match"]["ambiguous_editions"]
    assert "2 editions fit equally" in ident.evidence["why"]
    assert choose(title_candidates=editions[::-1]).book_id == "b1"


def test_the_edition_already_in_the_network_is_preferred():
    editions = [Candidate("b1", "Dune", "9780306406157", 0.9), Candidate("b2", "Dune", "9781861972712", 0.9)]
    editions[1].copies = 2
    ident = choose(title_candidates=editions)
    assert ident.book_id == "b2" and "already in the network: 2 copies" in ident.evidence["why"]


def test_cover_similarity_is_the_last_resort():
    assert choose(embedding_hits=[Hit("b9", 0.93)]).source == "embedding"
    assert choose(embedding_hits=[Hit("b9", 0.85)]).source is None
    assert choose(embedding_hits=[Hit(None, 0.99)]).source is None


def test_provisional_title_skips_isbn_and_price_lines():
    assert provisional_title("ISBN 9780306406157\n$24.99\nA Grammar of Stars\nHelen Okafor") == "A Grammar of Stars"
    assert provisional_title("9780306406157\n12\n") is None


def test_provisional_title_is_the_tallest_confident_lines_joined():
    from covr_core.identification.ocr import OcrLine

    lines = (
        OcrLine("ll 'i see io", 25.0, 0.07),  # background texture read as text
        OcrLine("Small Hours", 94.0, 0.034),
        OcrLine("in Lisbon", 96.0, 0.032),
        OcrLine("Joaquim Reis", 93.0, 0.018),
        OcrLine("ISBN 978-6-150-55199-9", 80.0, 0.01),
    )
    assert provisional_title("", lines) == "Small Hours in Lisbon"


def test_an_unconfirmed_printed_isbn_loses_to_a_clear_title_match():
    # Two misread digits can still pass the ISBN checksum.
    title = [Candidate("b1", "Winter Ledger", "9783347966222", 0.9, title_score=1.0)]
    ident = choose(ocr_isbns=["9783347066212"], title_candidates=title)
    assert (ident.source, ident.book_id, ident.isbn13) == ("ocr", "b1", "9783347966222")
    assert ident.evidence["unconfirmed_ocr_isbns"] == ["9783347066212"]
    alone = choose(ocr_isbns=["9783347066212"])
    assert (alone.source, alone.isbn13, alone.book_id) == ("isbn", "9783347066212", None)


def test_a_barcode_the_catalog_does_not_know_loses_to_the_printed_isbn_it_does():
    known = {"9783347966222": {"book_id": "b1", "title": "Winter Ledger"}}
    ident = choose(barcode_isbn="9783347066212", ocr_isbns=["9783347966222"], books_by_isbn=known)
    assert (ident.isbn13, ident.book_id) == ("9783347966222", "b1")
    assert ident.evidence["barcode_disagrees_with_print"] == "9783347066212"
    both_known = {**known, "9783347066212": {"book_id": "b2", "title": "Winter Ledger (2nd ed.)"}}
    ident = choose(barcode_isbn="9783347066212", ocr_isbns=["9783347966222"], books_by_isbn=both_known)
    assert ident.book_id == "b2"
