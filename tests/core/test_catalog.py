"""Catalog files in every supported format become validated books, and importing them twice changes nothing twice."""

from __future__ import annotations

import json
import sys

import pytest
from pydantic import ValidationError

from covr_core.catalog.books import (
    AUTHOR_MAX_CHARS,
    MAX_AUTHORS,
    MAX_TAGS,
    TAG_MAX_CHARS,
    TITLE_MAX_CHARS,
    BookRecord,
    CatalogFile,
    CatalogFileError,
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


def test_importing_twice_inserts_then_changes_nothing_without_duplicates(conn, tmp_path):
    text = GOODREADS_HEADER + "\n" + "\n".join(GOODREADS_ROWS) + "\n"
    path = _write(tmp_path, "goodreads.csv", text)

    first = import_books(conn, read_catalog_file(path))
    second = import_books(conn, read_catalog_file(path))

    assert (first.inserted, first.updated, first.skipped, len(first.errors)) == (3, 0, 0, 2)
    # The ISBN-less Catcher in the Rye is recognised by title and author, not inserted again.
    assert (second.inserted, second.updated, second.unchanged, second.skipped, len(second.errors)) == (0, 0, 2, 1, 2)
    assert second.rows == first.rows
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


def test_a_row_that_changes_nothing_is_unchanged_and_not_written(conn):
    isbn = "9780306406157"
    import_books(conn, [BookRecord(isbn13=isbn, title="Signal", authors=["A. Author"], published_year=1985,
                                   language="en", tags=["a", "b"])])
    stored = find_book_by_isbn(conn, isbn)

    same = [
        BookRecord(isbn13=isbn, title="Signal", authors=["A. Author"], published_year=1985, language="en",
                   tags=["b", "a"]),
        BookRecord(isbn13=isbn, title="Signal"),  # says less: the fields it leaves empty are kept anyway
        BookRecord(isbn13=isbn, title="Signal", tags=["a"]),
    ]
    for record in same:
        report = import_books(conn, [record])
        assert (report.inserted, report.updated, report.unchanged, report.skipped) == (0, 0, 1, 0), record
        assert find_book_by_isbn(conn, isbn) == stored, record  # updated_at included: nothing was written

    changes = [
        BookRecord(isbn13=isbn, title="Signal Processing"),
        BookRecord(isbn13=isbn, title="Signal Processing", authors=["B. Author"]),
        BookRecord(isbn13=isbn, title="Signal Processing", published_year=1986),
        BookRecord(isbn13=isbn, title="Signal Processing", language="fr"),
        BookRecord(isbn13=isbn, title="Signal Processing", tags=["c"]),
    ]
    for record in changes:
        report = import_books(conn, [record])
        assert (report.inserted, report.updated, report.unchanged, report.skipped) == (0, 1, 0, 0), record
    assert find_book_by_isbn(conn, isbn)["tags"] == ["a", "b", "c"]


def test_a_catalog_row_confirming_a_provisional_book_updates_its_source(conn):
    conn.execute("insert into catalog.book (isbn13, title, metadata_source) values ('9780306406157', 'Signal', 'ocr')")
    report = import_books(conn, [BookRecord(isbn13="9780306406157", title="Signal")])
    assert (report.updated, report.unchanged) == (1, 0)
    assert find_book_by_isbn(conn, "9780306406157")["metadata_source"] == "catalog"


def test_manual_edits_are_not_overwritten_by_a_file(conn):
    conn.execute(
        "insert into catalog.book (isbn13, title, metadata_source) values ('9780306406157', 'Curated', 'manual')"
    )
    report = import_books(conn, [BookRecord(isbn13="9780306406157", title="From File")])
    assert (report.inserted, report.updated, report.unchanged, report.skipped) == (0, 0, 0, 1)
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


# --- every row stands alone ------------------------------------------------------------------------------------------


def test_field_limits_refuse_a_record_before_the_database():
    assert len(BookRecord(title="t" * TITLE_MAX_CHARS).title) == TITLE_MAX_CHARS
    with pytest.raises(ValidationError, match=r"title is 1048576 characters, over the 500 limit"):
        BookRecord(title="t" * 1_048_576)
    with pytest.raises(ValidationError, match=r"author 'a{40}…' is 201 characters, over the 200 limit"):
        BookRecord(title="x", authors=["a" * (AUTHOR_MAX_CHARS + 1)])
    with pytest.raises(ValidationError, match=r"21 authors, over the 20 limit"):
        BookRecord(title="x", authors=[f"Author {i}" for i in range(MAX_AUTHORS + 1)])
    with pytest.raises(ValidationError, match=r"tag 't{40}…' is 65 characters, over the 64 limit"):
        BookRecord(title="x", tags=["t" * (TAG_MAX_CHARS + 1)])
    with pytest.raises(ValidationError, match=r"51 tags, over the 50 limit"):
        BookRecord(title="x", tags=[f"tag{i}" for i in range(MAX_TAGS + 1)])
    with pytest.raises(ValidationError, match=r"control character U\+0000"):
        BookRecord(title="Nul\x00Title")
    assert len(BookRecord(title="x", authors=[f"A{i}" for i in range(MAX_AUTHORS)]).authors) == MAX_AUTHORS


def test_a_huge_csv_cell_is_a_refused_row_and_the_rows_around_it_are_read(tmp_path):
    huge = "T" * 1_048_576  # over the csv module's default 128 KiB field limit
    text = f"isbn13,title,authors\n9780306406157,Before,A\n0439023483,{huge},B\n,After,C\n"
    books, errors = _split(list(read_catalog_file(_write(tmp_path, "huge.csv", text))))

    assert [b.title for b in books] == ["Before", "After"]
    assert errors == [RowError(3, "title is 1048576 characters, over the 500 limit")]


def test_a_latin1_csv_is_decoded_as_what_it_is(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("title,authors\nCafé Crème,Zoë Müller\nLes Misérables,Victor Hugo\n".encode("latin-1"))

    detected = CatalogFile.open(path)
    assert detected.encoding == "cp1252"
    assert detected.encoding_note == "detected, as byte 0xe9 on line 2 is not UTF-8"
    assert [b.title for b in detected.rows()] == ["Café Crème", "Les Misérables"]

    given = CatalogFile.open(path, encoding="latin-1")
    assert (given.encoding, given.encoding_note) == ("iso8859-1", None)
    assert [b.authors for b in given.rows()] == [["Zoë Müller"], ["Victor Hugo"]]

    with pytest.raises(CatalogFileError, match=r"latin1\.csv is not valid utf-8: byte 0xe9 on line 2"):
        CatalogFile.open(path, encoding="utf-8")
    with pytest.raises(CatalogFileError, match=r"unknown encoding 'klingon'"):
        CatalogFile.open(path, encoding="klingon")


def test_without_charset_normalizer_a_non_utf8_file_is_read_as_cp1252_and_says_it_guessed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "charset_normalizer", None)  # import fails as if it were not installed
    path = tmp_path / "latin1.csv"
    path.write_bytes("title\nCafé\n".encode("cp1252"))

    catalog = CatalogFile.open(path)
    assert catalog.encoding == "cp1252"
    assert catalog.encoding_note == "a guess, as byte 0xe9 on line 2 is not UTF-8 and no encoding was detected"
    assert [b.title for b in catalog.rows()] == ["Café"]


def test_utf8_with_a_bom_and_utf16_with_a_bom_read_as_text(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftitle,authors\nÉtude,Renée\n".encode())
    assert [(b.title, CatalogFile.open(path).encoding) for b in read_catalog_file(path)] == [("Étude", "utf-8")]
    path.write_bytes("title\tauthors\nÉtude\tRenée\n".encode("utf-16"))
    assert CatalogFile.open(path).encoding == "utf-16"
    assert [b.authors for b in read_catalog_file(path)] == [["Renée"]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"cover\.bin is a PNG image, not a catalog file"),
        (b"PK\x03\x04\x14\x00", r"cover\.bin is a ZIP archive \(an \.xlsx"),
        (b"title\nA\nB\x00\x01\x02", r"cover\.bin is binary, not a catalog file \(a NUL character on line 3"),
    ],
)
def test_a_binary_file_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "cover.bin"
    path.write_bytes(content)
    with pytest.raises(CatalogFileError, match=message):
        list(read_catalog_file(path))


def test_a_json_array_of_objects_is_read_with_each_row_on_its_line(tmp_path):
    text = '[\n  {"isbn13": "9780306406157", "title": "First"},\n  {"title": ""},\n\n  3,\n  {"title": "Last"}\n]\n'
    books, errors = _split(list(read_catalog_file(_write(tmp_path, "books.json", text))))

    assert [b.title for b in books] == ["First", "Last"]
    assert [b._line for b in books] == [2, 6]
    assert errors == [RowError(3, "title '' is empty; every book needs a title"),
                      RowError(5, "expected a JSON object, got int")]
    assert list(read_catalog_file(_write(tmp_path, "empty.json", "[]"))) == []
    pretty = '{\n  "title": "One Pretty Object"\n}\n'
    assert [b.title for b in read_catalog_file(_write(tmp_path, "one.json", pretty))] == ["One Pretty Object"]


def test_a_broken_json_array_is_refused_whole(tmp_path):
    path = _write(tmp_path, "broken.json", '[\n  {"title": "A"},\n  {"title": "B"\n]\n')
    with pytest.raises(CatalogFileError, match=r"broken\.json: not a valid JSON array \(.* on line 4, column 1\)"):
        list(read_catalog_file(path))


def test_an_empty_file_has_no_rows(tmp_path):
    assert list(read_catalog_file(_write(tmp_path, "empty.csv", ""))) == []
    assert list(read_catalog_file(_write(tmp_path, "blank.jsonl", "\n  \n"))) == []
    assert list(read_catalog_file(_write(tmp_path, "header.csv", "isbn13,title\n"))) == []


def test_a_repeated_isbn_is_refused_naming_the_first_row_which_wins(conn, tmp_path):
    text = (
        "isbn13,title,authors\n"
        "9780306406157,Signal Processing,A. Author\n"
        ",No ISBN,Someone\n"
        "0-306-40615-2,The Same Book Again,B. Author\n"
        ",No ISBN,Someone\n"
    )
    report = import_books(conn, read_catalog_file(_write(tmp_path, "dup.csv", text)))

    assert (report.inserted, report.updated, report.skipped) == (2, 0, 1)  # the second ISBN-less row is known
    assert report.errors == [RowError(4, "duplicate of ISBN 9780306406157 on line 2; the first row wins")]
    assert report.rows == 4
    assert find_book_by_isbn(conn, "9780306406157")["title"] == "Signal Processing"


def test_a_row_the_database_refuses_is_reported_and_the_others_are_kept(conn):
    unchecked = {"authors": [], "published_year": None, "language": None, "tags": []}
    records = [
        BookRecord(isbn13="9780306406157", title="Kept Before"),
        # model_construct skips validation, as a caller with a bug might: the database still has the last word.
        BookRecord.model_construct(isbn13="9780306406158", title="Bad Checksum", **unchecked),
        # Distinct words, so the search trigger's tsvector passes Postgres' 1 MB limit.
        BookRecord.model_construct(isbn13="9780439023481", title=" ".join(f"w{i}" for i in range(200_000)),
                                   **unchecked),
        RowError(4, "refused while reading"),
        BookRecord(title="Kept After", authors=["Someone"]),
    ]
    report = import_books(conn, records)

    assert (report.inserted, report.updated, report.skipped, report.rows) == (2, 0, 0, 5)
    assert [(e.line, e.reason.split(":")[0]) for e in report.errors] == [
        (2, "refused by the database"), (3, "refused by the database"), (4, "refused while reading")]
    assert "book_isbn13_check" in report.errors[0].reason and report.errors[0].reason.endswith("(23514)")
    assert "too long for tsvector" in report.errors[1].reason and len(report.errors[1].reason) < 250
    titles = {r["title"] for r in conn.execute("select title from catalog.book").fetchall()}
    assert titles == {"Kept Before", "Kept After"}
