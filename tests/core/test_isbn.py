"""ISBN checksums, normalisation and extraction from OCR-like text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from covr_core.shared.isbn import (
    find_isbns_in_text,
    is_valid_isbn10,
    is_valid_isbn13,
    isbn10_to_13,
    isbn13_check_digit,
    normalize_isbn,
)
from covr_pipelines.sample_photos import hyphenate_isbn13, valid_isbn13


@pytest.mark.parametrize("isbn", ["9780306406157", "9780135957059", "9791034304233", "9780804429573"])
def test_valid_isbn13(isbn):
    assert is_valid_isbn13(isbn)


@pytest.mark.parametrize(
    "bad", ["9780306406158", "978030640615", "97803064061570", "978-0306406157", "", "978O306406157"]
)
def test_invalid_isbn13(bad):
    assert not is_valid_isbn13(bad)


@pytest.mark.parametrize("isbn", ["0306406152", "080442957X", "080442957x", "0131103628"])
def test_valid_isbn10(isbn):
    assert is_valid_isbn10(isbn)


@pytest.mark.parametrize("bad", ["0306406153", "X306406152", "030640615", "03064061522", "0-306-40615-2"])
def test_invalid_isbn10(bad):
    assert not is_valid_isbn10(bad)


@pytest.mark.parametrize(
    ("isbn10", "isbn13"),
    [("0306406152", "9780306406157"), ("0-306-40615-2", "9780306406157"), ("080442957X", "9780804429573")],
)
def test_isbn10_to_13(isbn10, isbn13):
    assert isbn10_to_13(isbn10) == isbn13


def test_isbn10_to_13_names_the_bad_input():
    with pytest.raises(ValueError, match="0306406153"):
        isbn10_to_13("0306406153")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("978-0-306-40615-7", "9780306406157"),
        ("978 0 306 40615 7", "9780306406157"),
        ("ISBN 978-0-306-40615-7", "9780306406157"),
        ("ISBN-10: 0-306-40615-2", "9780306406157"),
        ("0306406152", "9780306406157"),
        ("979-10-343-0423-3", "9791034304233"),
        ("9780306406158", None),  # bad check digit
        ("5012345678900", None),  # valid EAN-13 but not Bookland
        ("hello", None),
        ("", None),
    ],
)
def test_normalize_isbn(raw, expected):
    assert normalize_isbn(raw) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ISBN 978-0-13-595705-9", ["9780135957059"]),
        ("ISBN-10: 0-306-40615-2", ["9780306406157"]),
        ("ISBN13 9780306406157", ["9780306406157"]),
        ("ISBN-13: 978-0-306-40615-7\n", ["9780306406157"]),
        ("lSBN 978–0–306–40615–7", ["9780306406157"]),  # OCR: I->l, hyphens read as en dashes
        ("ISBN 978-0-13-\n595705-9", ["9780135957059"]),  # wrapped at a hyphen
        ("9 780306 406157", ["9780306406157"]),  # human-readable line under the bars
        ("9 780306 406157 51999", ["9780306406157"]),  # with the price add-on
        ("ISBN 978-O-l3-S957O5-9", ["9780135957059"]),  # O->0, l->1, S->5
        ("ISBN 978-0-306-4O6l5-7", ["9780306406157"]),
        ("ISBN 97B-0-306-40615-7", ["9780306406157"]),  # B->8
        ("ISBN 0-8044-2957-X", ["9780804429573"]),
        ("Published 2019. ISBN 978-0-306-40615-7 (pbk.)", ["9780306406157"]),
    ],
)
def test_find_isbns_in_text(text, expected):
    assert find_isbns_in_text(text) == expected


def test_find_isbns_keeps_order_and_dedups():
    text = (
        "ISBN 978-0-13-595705-9 (hardcover)\n"
        "ISBN 978-0-306-40615-7 (paperback)\n"
        "ISBN-10: 0-306-40615-2\n"  # same book as the paperback
        "9 780135 957059"
    )
    assert find_isbns_in_text(text) == ["9780135957059", "9780306406157"]


@pytest.mark.parametrize(
    "text",
    [
        "ISBN 978-0-306-40615-8",  # checksum fails
        "Call 0306406152 for orders",  # unlabelled 10-digit number
        "5 012345 678900",  # grocery EAN-13
        "BOOKS OBLIGE SOLIDS",  # confusable letters, but no digits
        "Chapter 12, pages 978-1013",
        "",
    ],
)
def test_find_isbns_rejects_non_isbns(text):
    assert find_isbns_in_text(text) == []


def test_find_isbns_does_not_rewrite_words_next_to_numbers():
    # "SOLD" next to the number must not be read as digits and shift the window.
    assert find_isbns_in_text("SOLD 978-0-306-40615-7 BOOKS") == ["9780306406157"]


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "ISBN ", "ISBN-13: ", "ISBN: "]))
def test_find_any_generated_isbn(seed, label):
    isbn = valid_isbn13(seed)
    for written in (isbn, hyphenate_isbn13(isbn), f"{isbn[0]} {isbn[1:7]} {isbn[7:]}"):
        assert find_isbns_in_text(f"Some blurb text.\n{label}{written}\nPrinted in EU") == [isbn]


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_check_digit_makes_valid_isbn13(first12):
    assert is_valid_isbn13(first12 + isbn13_check_digit(first12))
