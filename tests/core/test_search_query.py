"""Pure parts of search: folding, query words, the filter language, sorts, typo budgets and expansions."""

from __future__ import annotations

import pytest

from covr_core.search.dictionary import expansions
from covr_core.search.document import fold
from covr_core.search.query import (
    And,
    Compare,
    In,
    Not,
    Or,
    Range,
    parse_facets,
    parse_filter,
    parse_query,
    parse_sort,
    to_meili,
    typo_budget,
)
from covr_core.shared.errors import InvalidInput


def test_fold_matches_the_sql_twin_on_awkward_text():
    assert fold("L'Étranger — “Café” Ærø Straße ŁÓDŹ o'brien_x 3.14") == \
        "l etranger cafe aero strasse lodz o brien x 3 14"


def test_query_words_prefix_and_phrases():
    q = parse_query("Pragmatc  PROGRAMER")
    assert [t.words for t in q.terms] == [("pragmatc",), ("programer",)]
    assert [t.prefix for t in q.terms] == [False, True] and [t.typos for t in q.terms] == [1, 2]
    assert not parse_query("dune ").terms[-1].prefix
    q = parse_query('"Dune Messiah" herb')
    assert q.terms[0].quoted and q.terms[0].words == ("dune", "messiah") and q.terms[0].typos == 0
    assert q.terms[1].prefix and q.key == "dune messiah herb"
    assert parse_query("").is_placeholder and parse_query("  ").is_placeholder
    with pytest.raises(InvalidInput, match="over the 500 limit"):
        parse_query("x" * 501)


def test_typo_budget_grows_with_word_length():
    assert [typo_budget("x" * n) for n in (1, 4, 5, 8, 9, 20)] == [0, 0, 1, 1, 2, 2]


def test_expansions_stay_within_the_budget_and_count_a_swap_once():
    words = ["programmer", "programme", "program", "pragmatic", "grammar", "programer"]
    by_length: dict[int, list[str]] = {}
    for w in words:
        by_length.setdefault(len(w), []).append(w)
    found = expansions("programer", by_length, 2)
    assert found[0] == "programmer" and set(found) == {"programmer", "programme", "program"}
    assert expansions("pragmatci", by_length, 1) == ["pragmatic"]  # a swap of neighbours is one edit
    assert expansions("dune", by_length, 0) == []


def test_the_filter_language():
    tree = parse_filter("status = available AND (tags = 'sci-fi' OR published_year >= 2000) AND NOT language IN "
                        "[en, fr] AND condition_grade 5 TO 8")
    assert tree == And((
        Compare("status", "=", "available"),
        Or((Compare("tags", "=", "sci-fi"), Compare("published_year", ">=", 2000))),
        Not(In("language", ("en", "fr"))),
        Range("condition_grade", 5, 8),
    ))
    assert to_meili(tree) == ('(status = "available" AND (tags = "sci-fi" OR published_year >= 2000) AND '
                              'NOT (language IN ["en", "fr"]) AND condition_grade 5 TO 8)')
    assert parse_filter('tags NOT IN ["a \\"b\\"", c]') == In("tags", ('a "b"', "c"), negated=True)
    assert parse_filter("owner_id = 0A6A8F0E-0000-4000-8000-000000000001").value == \
        "0a6a8f0e-0000-4000-8000-000000000001"
    assert parse_filter(None) is None and parse_filter("  ") is None


@pytest.mark.parametrize("expr, words", [
    ("notes = x", "not filterable"), ("status", "ends after"), ("status = ", "ends too early"),
    ("status > x", "only numbers"), ("published_year = soon", "numbers"), ("owner_id = me", "uuid"),
    ("status = a AND", "ends too early"), ("(status = a", "ends too early"), ("(status = a))", "unexpected"),
    ("status = a b", "unexpected 'b'"),
    ("status NOT = a", "expected IN"), ("condition_grade 1 2", "expected 'TO'"), ("status = a ~", "unexpected '~'"),
    ("status = 'a", "cannot read"),
    ("(" * 25 + "status = a" + ")" * 25, "20 deep"),
])
def test_bad_filters_say_where(expr, words):
    with pytest.raises(InvalidInput, match=words):
        parse_filter(expr)


def test_sorts_and_facets():
    assert [s.meili() for s in parse_sort("title, published_year:DESC")] == ["title:asc", "published_year:desc"]
    assert parse_sort(None) == () and parse_facets("status,tags,status") == ("status", "tags")
    with pytest.raises(InvalidInput, match="not sortable"):
        parse_sort("notes")
    with pytest.raises(InvalidInput, match="not filterable"):
        parse_facets("title")
