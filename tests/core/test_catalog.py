"""Catalog files in every supported format become validated books, and importing them twice changes nothing twice."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from covr_core.catalog import (
    BookRecord,
    RowError,
    find_book_by_isbn,
    import_books,
    normalize_title,
    read_catalog_file,
    strip_series,
)

GOODREADS_HEADER = (
    "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,ISBN13,My Rating,Average Rating,Publisher,Binding,"
    "Number of Pages,Year Published,Original Publication Year,Date Read,Date Added,Bookshelves,"
    "Bookshelves with positions,Exclusive Shelf,My Review,Spoiler,Private Notes,Read Count,Owned Copies"
)
# Line numbers as an editor shows them: the review on line 3 spans lines 3-4, so the bad checksum is on line 6.
GOODREADS_ROWS = [
    '2767052,"The Hunger Games (The Hunger Games, #1)",Suzanne Collins,"Collins, Suzanne",,"=""0439023483""",'
    '"=""9780439023481""",4,4.33,Scholastic Press,Hardcover,374,2008,2008,2012/03/01,2011/12/05,'
    '"favorites, dystopia","favorites (#3), dystopia (#1)",read,,,,1,0',
    '3,"Harry Potter and the Sorcerer\'s Stone (Harry Potter, #1)",J.K. Rowling,"Rowling, J.K.",Mary GrandPré,'
    '="043942089X",="",5,4.47,Scholastic,Paperback,309,1998,1997,,2013/01/02,,,read,"Loved it.\nRead it twice.",'
    ",,2,1",
    '5107,The Catcher in the Rye,J.D. Salinger,"Salinger, J.D.",,"=""""","=""""",3,3.80,"Little, Brown",'
    "Paperback,277,2001,1951,,2013/01/02,to-read,to-read (#4),to-read,,,,0,0",
    '99,Bad Checksum,Someone,"Someone",,"=""""","=""9780306406158""",0,3.1,X,Paperback,1,2001,,,2020/01/01,,,'
    "to-read,,,,0,0",
    '100,"  ",Nobody,"Nobody",,"=""""","=""""",0,3.1,X,Paperback,1,2001,,,2020/01/01,,,to-read,,,,0,0',
]


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _split(items):
    books = [i for i in items if isinstance(i, BookRecord)]
    errors = [i for i in items if isinstance(i, RowError)]
    return books, errors


def test_jsonl_rows_become_books_and_bad_rows_name_their_line(tmp_path):
    lines = [
        {"isbn13": "978-0-306-40615-7", "title": " Signal  Processing ", "authors": ["A. Author", "B. Author"],
         "published_year": 1985, "language": "English", "tags": ["science"]},
        {"isbn13": "0439023483", "title": "The Hunger Games", "authors": "Suzanne Collins; Someone Else",
         "published_year": "2008", "language": "en-US", "tags": "ya|dystopia"},
        {"title": "No ISBN Here", "authors": [], "language": "Klingon"},
    ]  # fmt: skip
    text = "\n".join(json.dumps(line) for line in lines)
    text += '\n\n{"isbn13": "9780306406158", "title": "Bad"}\n{not json\n{"title": "Late", "published_year": 2500}\n'
    books, errors = _split(list(read_catalog_file(_write(tmp_path, "books.jsonl", text))))

    assert [b.isbn13 for b in books] == ["9780306406157", "9780439023481", None]
    assert books[0].title == "Signal Processing"
    assert books[0].language == "en"
    assert books[1].authors == ["Suzanne Collins", "Someone Else"]
    assert books[1].published_year == 2008
    assert books[1].language == "en"
    assert books[1].tags == ["ya", "dystopia"]
    assert books[2].language is None
    assert [(e.line, e.reason) for e in errors] == [
        (5, "ISBN 9780306406158 has a bad checksum"),
        (6, errors[1].reason),
        (7, "published_year 2500 is outside 1400..2100"),
    ]
    assert "not valid JSON" in errors[1].reason
    assert str(errors[0]) == "line 5: ISBN 9780306406158 has a bad checksum"


def test_csv_with_catalog_headers(tmp_path):
    text = (
        "isbn13,title,authors,published_year,language,tags\n"
        '9780306406157,Signal Processing,"A. Author; B. Author",1985,en,science|maths\n'
        "0-306-40615-2,Duplicate Of The First,C. Author,,,\n"
        ",Only A Title,,,,\n"
        "12345,Short ISBN,,,,\n"
    )
    books, errors = _split(list(read_catalog_file(_write(tmp_path, "books.csv", text))))

    assert [b.title for b in books] == ["Signal Processing", "Duplicate Of The First", "Only A Title"]
    assert books[0].authors == ["A. Author", "B. Author"]
    assert books[0].tags == ["science", "maths"]
    assert books[1].isbn13 == "9780306406157"
    assert books[2].isbn13 is None
    assert errors == [RowError(5, "ISBN '12345' is not 10 or 13 digits")]


def test_goodreads_export_with_excel_cells_isbn10_only_rows_and_a_bad_checksum(tmp_path):
    text = GOODREADS_HEADER + "\n" + "\n".join(GOODREADS_ROWS) + "\n"
    books, errors = _split(list(read_catalog_file(_write(tmp_path, "goodreads_library_export.csv", text))))

    hunger, potter, catcher = books
    assert hunger.isbn13 == "9780439023481"
    assert hunger.title == "The Hunger Games (The Hunger Games, #1)"
    assert hunger.tags == ["favorites", "dystopia"]
    assert hunger.published_year == 2008
    assert potter.isbn13 == "9780439420891"  # from the ISBN-10 column, X check digit
    assert potter.authors == ["J.K. Rowling", "Mary GrandPré"]
    assert catcher.isbn13 is None
    assert catcher.published_year == 2001
    assert catcher.tags == ["to-read"]
    assert [e.line for e in errors] == [6, 7]
    assert errors[0].reason == "ISBN 9780306406158 has a bad checksum"
    assert "title" in errors[1].reason


def test_an_unknown_file_is_refused_by_name(tmp_path):
    path = _write(tmp_path, "people.csv", "name,email\nann,a@example.org\n")
    with pytest.raises(ValueError, match=r"people\.csv: unrecognised catalog format"):
        list(read_catalog_file(path))


def test_book_record_rules():
    assert BookRecord(isbn13="ISBN 0-306-40615-2", title="x").isbn13 == "9780306406157"
    assert BookRecord(title="x", language="Français").language == "fr"
    with pytest.raises(ValidationError, match="bad checksum"):
        BookRecord(isbn13="9780306406158", title="x")
    with pytest.raises(ValidationError, match="978 or 979"):
        BookRecord(isbn13="4006381333931", title="x")  # a valid EAN-13 that is not a book
    with pytest.raises(ValidationError, match="empty"):
        BookRecord(isbn13="9780306406157", title="   ")


def test_series_notes_are_ignored_for_matching_only():
    assert strip_series("The Hunger Games (The Hunger Games, #1)") == "The Hunger Games"
    assert strip_series("Guards! Guards! (Discworld, #8; City Watch #1)") == "Guards! Guards!"
    assert strip_series("The Road (Not a series)") == "The Road (Not a series)"
    assert normalize_title("Le Petit Prince (Les Classiques, #3)") == "le petit prince"


def test_importing_twice_inserts_then_updates_without_duplicates(conn, tmp_path):
    text = GOODREADS_HEADER + "\n" + "\n".join(GOODREADS_ROWS) + "\n"
    path = _write(tmp_path, "goodreads.csv", text)

    first = import_books(conn, read_catalog_file(path))
    second = import_books(conn, read_catalog_file(path))

    assert (first.inserted, first.updated, first.skipped, len(first.errors)) == (3, 0, 0, 2)
    # The ISBN-less Catcher in the Rye is recognised by title and author, not inserted again.
    assert (second.inserted, second.updated, second.skipped, len(second.errors)) == (0, 2, 1, 2)
    assert conn.execute("select count(*) as n from catalog.book").fetchone()["n"] == 3

    book = find_book_by_isbn(conn, "0-439-02348-3")
    assert book["title"] == "The Hunger Games (The Hunger Games, #1)"
    assert book["authors"] == ["Suzanne Collins"]
    assert book["metadata_source"] == "catalog"
    assert book["tags"] == ["favorites", "dystopia"]
    assert find_book_by_isbn(conn, "9780306406157") is None


def test_isbn_less_duplicate_matches_despite_series_case_and_author_order(conn):
    records = [
        BookRecord(title="The Left Hand of Darkness (Hainish Cycle, #4)", authors=["Ursula K. Le Guin"]),
        BookRecord(title="the left hand of darkness", authors=["Le Guin, Ursula K."]),
        BookRecord(title="The Left Hand of Darkness", authors=["Someone Else"]),
    ]
    report = import_books(conn, records)
    assert (report.inserted, report.skipped) == (2, 1)


def test_update_keeps_what_the_file_does_not_say_and_merges_tags(conn):
    import_books(conn, [BookRecord(isbn13="9780306406157", title="Old", published_year=1985, tags=["a", "b"])])
    report = import_books(conn, [BookRecord(isbn13="9780306406157", title="New", tags=["b", "c"])])
    book = find_book_by_isbn(conn, "9780306406157")
    assert report.updated == 1
    assert (book["title"], book["published_year"], book["tags"]) == ("New", 1985, ["a", "b", "c"])


def test_manual_edits_are_not_overwritten_by_a_file(conn):
    conn.execute(
        "insert into catalog.book (isbn13, title, metadata_source) values ('9780306406157', 'Curated', 'manual')"
    )
    report = import_books(conn, [BookRecord(isbn13="9780306406157", title="From File")])
    assert (report.inserted, report.updated, report.skipped) == (0, 0, 1)
    assert find_book_by_isbn(conn, "9780306406157")["title"] == "Curated"


def test_one_transaction_a_failure_leaves_nothing(conn):
    class Boom(Exception):
        pass

    def records():
        yield BookRecord(isbn13="9780306406157", title="First")
        raise Boom

    with pytest.raises(Boom):
        import_books(conn, records())
    assert conn.execute("select count(*) as n from catalog.book").fetchone()["n"] == 0


def test_find_book_by_isbn_refuses_a_non_isbn(conn):
    with pytest.raises(ValueError, match="9780306406158 has a bad checksum"):
        find_book_by_isbn(conn, "9780306406158")
