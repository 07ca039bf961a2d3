"""The embedded backend on real Postgres: relevance basics, every filter, sort and facet, visibility, the swap."""

from __future__ import annotations

import json

import pytest
from psycopg.rows import dict_row

from covr_core.search.embedded import PostgresSearch
from covr_core.search.query import folded_array_sql, parse_filter, to_sql
from covr_core.search.service import search_copies
from covr_core.shared.errors import InvalidInput
from tests.core.search_support import befriend, book, connector, copy, titles, user


@pytest.fixture
def library(conn, db_url):
    """Alice owns a shelf; Bob is her contact with one copy; Carol is a stranger with one copy."""
    conn.autocommit = True
    a, b, c = user(conn, "alice", "Alice Liddell"), user(conn, "bob", "Bob Stone"), user(conn, "carol")
    befriend(conn, a, b)
    books = {
        "prag": book(conn, "The Pragmatic Programmer", ["Andrew Hunt", "David Thomas"], year=2019,
                     tags=["programming", "software-engineering"], language="en", isbn13="9780135957059"),
        "dune": book(conn, "Dune", ["Frank Herbert"], year=1965, tags=["sci-fi"], language="en"),
        "messiah": book(conn, "Dune Messiah", ["Frank Herbert"], year=1969, tags=["sci-fi"], language="en"),
        "etranger": book(conn, "L'Étranger", ["Albert Camus"], year=1942, tags=["classic"], language="fr"),
        "garden": book(conn, "A Garden Notebook", ["Mary Keen"], year=2001, tags=["gardening"], language="en"),
        "orchard": book(conn, "The Quiet Orchard", ["Jane Doe"], year=2010, language="en"),
    }
    copies = {
        "prag": copy(conn, books["prag"], a, grade=8),
        "dune": copy(conn, books["dune"], a, grade=6),
        "messiah": copy(conn, books["messiah"], a, grade=9, status="unavailable"),
        "etranger": copy(conn, books["etranger"], a, grade=4),
        "garden": copy(conn, books["garden"], a, notes="Pressed flowers inside; mentions Dune in the margin"),
        "orchard": copy(conn, books["orchard"], b, grade=7, tags=["signed"]),
        "stranger": copy(conn, books["dune"], c, grade=10),
        "lost": copy(conn, books["orchard"], b, status="lost"),
    }
    connect = connector(db_url)
    backend = PostgresSearch(connect)
    backend.reindex()
    yield {"conn": conn, "backend": backend, "users": {"alice": a, "bob": b, "carol": c}, "copies": copies,
           "books": books, "connect": connect}
    connect.pool.close()


def _search(lib, who="alice", **kw):
    viewer = None if who is None else lib["users"][who]
    return search_copies(lib["conn"], lib["backend"], viewer_id=viewer, **kw)


def test_a_title_match_ranks_above_a_notes_match(library):
    result = _search(library, q="dune")
    assert titles(result)[:2] == ["Dune", "Dune Messiah"]
    assert titles(result)[-1] == "A Garden Notebook"


def test_dune_ranks_dune_above_dune_messiah(library):
    assert titles(_search(library, q="Dune"))[:2] == ["Dune", "Dune Messiah"]


def test_typos_find_the_pragmatic_programmer(library):
    assert titles(_search(library, q="pragmatc programer"))[0] == "The Pragmatic Programmer"


def test_an_author_only_query_works(library):
    assert set(titles(_search(library, q="herbert"))) == {"Dune", "Dune Messiah"}
    assert titles(_search(library, q="andrew hunt")) == ["The Pragmatic Programmer"]


def test_accents_fold_both_ways(library):
    assert titles(_search(library, q="etranger")) == ["L'Étranger"]
    assert titles(_search(library, q="ÉTRANGER camus")) == ["L'Étranger"]


def test_the_last_word_is_a_prefix(library):
    assert titles(_search(library, q="pragm")) == ["The Pragmatic Programmer"]
    assert titles(_search(library, q="pragm ")) == []  # a finished word is a whole word


def test_a_tag_matches(library):
    assert titles(_search(library, q="gardening")) == ["A Garden Notebook"]
    assert titles(_search(library, q="software engineering")) == ["The Pragmatic Programmer"]


def test_visibility_own_and_contacts_only(library):
    mine = {h["copy_id"] for h in _search(library, limit=100).hits}
    c = library["copies"]
    assert mine == {c[k] for k in ("prag", "dune", "messiah", "etranger", "garden", "orchard")}
    # Bob sees Alice's copies and his own, including his lost one; Carol only hers.
    assert c["lost"] in {h["copy_id"] for h in _search(library, "bob", limit=100).hits}
    assert {h["copy_id"] for h in _search(library, "carol", q="dune").hits} == {c["stranger"]}
    # Alice never sees Bob's lost copy, nor Carol's Dune, whatever she asks.
    for q, f in (("orchard", None), ("dune", None), (None, "status = lost"),
                 (None, f"current_holder_id = {library['users']['carol']}")):
        ids = {h["copy_id"] for h in _search(library, q=q, filter=f, limit=100).hits}
        assert c["lost"] not in ids and c["stranger"] not in ids


def test_every_filter(library):
    t = lambda f: sorted(titles(_search(library, filter=f, limit=100)))  # noqa: E731
    assert t("status = unavailable") == ["Dune Messiah"]
    assert t("status != available") == ["Dune Messiah"]
    assert t(f"current_holder_id = {library['users']['bob']}") == ["The Quiet Orchard"]
    assert t(f"owner_id = {library['users']['bob']}") == ["The Quiet Orchard"]
    assert t("tags = SCI-FI") == ["Dune", "Dune Messiah"]
    assert t("tags = signed") == ["The Quiet Orchard"]
    assert t("condition_grade >= 8") == ["Dune Messiah", "The Pragmatic Programmer"]
    assert t("condition_grade 6 TO 7") == ["Dune", "The Quiet Orchard"]
    assert t("published_year < 1950") == ["L'Étranger"]
    assert t("language = fr") == ["L'Étranger"]
    assert t("language IN [fr, de]") == ["L'Étranger"]
    assert t("tags = sci-fi AND NOT published_year = 1965") == ["Dune Messiah"]
    assert t("(language = fr OR condition_grade > 8) AND status = available") == ["L'Étranger"]
    assert t("tags NOT IN [sci-fi, classic, gardening, programming]") == ["The Quiet Orchard"]


@pytest.mark.parametrize("tag, wanted", [
    ("sci, fi", True), ('Say "Hi"', True), ("back\\slash", True), ("NULL", True), ("İstanbul", True),
    ("sci", False), ("", False),
])
def test_a_tag_filter_ignores_case_whatever_characters_the_tags_hold(conn, tag, wanted):
    # Documents keep their tags lower-cased through the array's text form; quoting, escapes and a tag spelt NULL
    # survive it, and the filter lower-cases its value.
    tags = ["Sci, Fi", 'say "hi"', "Back\\Slash", "null", "İstanbul"]
    document = f"(select {folded_array_sql('%(tags)s::text[]')} as tag_keys) d"
    params: dict = {"tags": tags}
    where = to_sql(parse_filter(f"tags = {json.dumps(tag, ensure_ascii=False)}"), params, "d")
    assert conn.execute(f"select {where} as hit from {document}", params).fetchone()["hit"] is wanted
    params = {"tags": tags}
    where = to_sql(parse_filter(f"tags != {json.dumps(tag, ensure_ascii=False)}"), params, "d")
    assert conn.execute(f"select {where} as hit from {document}", params).fetchone()["hit"] is not wanted


def test_every_sort(library):
    s = lambda spec: titles(_search(library, sort=spec, limit=100))  # noqa: E731
    assert s("title")[:2] == ["A Garden Notebook", "Dune"]
    assert s("published_year:desc")[:2] == ["The Pragmatic Programmer", "The Quiet Orchard"]
    assert s("published_year")[:2] == ["L'Étranger", "Dune"]
    assert s("condition_grade:desc")[0] == "Dune Messiah"
    assert s("condition_grade")[-1] == "A Garden Notebook"  # no grade: last either way
    assert s("created_at:desc")[0] == "The Quiet Orchard"
    assert s("created_at")[0] == "The Pragmatic Programmer"


def test_facets_count_the_matches(library):
    result = _search(library, facets="status,tags,language,condition_grade,published_year,owner_id,"
                                     "current_holder_id")
    assert result.facets["status"] == {"available": 5, "unavailable": 1}
    assert result.facets["tags"]["sci-fi"] == 2
    assert result.facets["language"] == {"en": 5, "fr": 1}
    assert result.facets["condition_grade"]["8"] == 1
    assert result.facets["owner_id"][library["users"]["alice"]] == 5
    assert result.total == 6
    assert _search(library, q="dune", facets="tags").facets == {"tags": {"sci-fi": 2, "gardening": 1}}


def test_pagination_and_the_result_shape(library):
    first = _search(library, sort="title", limit=2)
    second = _search(library, sort="title", limit=2, offset=2)
    assert first.total == second.total == 6
    assert not set(titles(first)) & set(titles(second))
    hit = first.hits[0]
    assert set(hit) >= {"copy_id", "book_id", "title", "authors", "status", "current_holder_name", "owner_id",
                        "has_images", "search_terms", "created_at", "updated_at"}
    assert hit["created_at"].endswith("Z") and first.took_ms > 0 and first.backend == "postgres"


def test_bad_inputs_name_what_is_wrong(library):
    for kw, words in (({"filter": "notes = x"}, "not filterable"), ({"filter": "status = "}, "ends"),
                      ({"filter": "condition_grade > good"}, "numbers"), ({"sort": "notes"}, "not sortable"),
                      ({"sort": "title:up"}, "neither asc"), ({"facets": "notes"}, "not filterable"),
                      ({"limit": 0}, "limit"), ({"offset": 995, "limit": 10}, "first 1000"),
                      ({"filter": "owner_id = bob"}, "uuid")):
        with pytest.raises(InvalidInput, match=words):
            _search(library, **kw)


def test_search_terms_fold_title_and_author_words(library):
    row = library["conn"].cursor(row_factory=dict_row).execute(
        "select search_terms from read_model.copy_search_document where copy_id = %s",
        (library["copies"]["etranger"],)).fetchone()
    assert row["search_terms"] == ["l", "etranger", "albert", "camus"]


def test_a_page_found_among_title_and_author_matches_alone_is_the_page_full_ranking_gives(conn, db_url):
    # A common word: 25 copies with it in the title or authors, 30 with it only in their tags or notes, and some
    # with a typo'd neighbour or a longer word it prefixes. Without facets or a sort the embedded backend ranks
    # the title and author matches alone when they fill the page; asking for a facet makes it rank every match.
    # Every page must be the same both ways, and so must the total.
    conn.autocommit = True
    owner = user(conn, "reader")
    for i in range(20):
        copy(conn, book(conn, f"River Story {i}", ["Someone"]), owner)
    for i in range(5):
        copy(conn, book(conn, f"Tale {i}", ["Ann River"]), owner)
    for i in range(25):
        copy(conn, book(conn, f"Notes {i}", ["Nobody"], tags=["river"]), owner)
    for i in range(5):
        copy(conn, book(conn, f"Shore {i}", ["Nobody"]), owner, notes="found by the river")
    copy(conn, book(conn, "Riverside", ["Nobody"]), owner)
    copy(conn, book(conn, "The Rivers", ["Nobody"]), owner)
    connect = connector(db_url)
    try:
        backend = PostgresSearch(connect)
        backend.reindex()
        for q in ("river", "rivr", "river story", "ann river"):
            for offset, limit in ((0, 20), (0, 10), (20, 20), (15, 10), (40, 20)):
                # Over everything (no viewer): a member's searches rank every visible match either way.
                tiered = search_copies(conn, backend, viewer_id=None, q=q, limit=limit, offset=offset)
                full = search_copies(conn, backend, viewer_id=None, q=q, limit=limit, offset=offset,
                                     facets="status")
                assert [h["copy_id"] for h in tiered.hits] == [h["copy_id"] for h in full.hits], (q, offset)
                assert tiered.total == full.total, (q, offset)
                mine = search_copies(conn, backend, viewer_id=owner, q=q, limit=limit, offset=offset)
                assert [h["copy_id"] for h in mine.hits] == [h["copy_id"] for h in full.hits], (q, offset)
        first = search_copies(conn, backend, viewer_id=owner, q="river", limit=40)
        # The word whole in the title or authors, then the longer words it begins there (the last word typed is
        # also a prefix), then the rest.
        whole = {f"River Story {i}" for i in range(20)} | {f"Tale {i}" for i in range(5)}
        assert first.total == 57 and set(titles(first)[:25]) == whole
        assert set(titles(first)[25:27]) == {"Riverside", "The Rivers"}
    finally:
        connect.pool.close()
