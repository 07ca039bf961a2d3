"""`covr catalog import` against real PostgreSQL: every row is counted, every refusal names its line, no traceback."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import psycopg
import pytest
from psycopg.rows import dict_row


SUMMARY = re.compile(
    r"^(?P<file>.+): (?P<rows>\d+) rows: (?P<inserted>\d+) inserted, (?P<updated>\d+) updated, "
    r"(?P<unchanged>\d+) unchanged, (?P<skipped>\d+) skipped, (?P<refused>\d+) refused \(encoding (?P<encoding>.+)\)$"
)


def _books(db_url) -> dict[str | None, list[str]]:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        rows = conn.execute("select isbn13, title from catalog.book order by title").fetchall()
    books: dict[str | None, list[str]] = {}
    for row in rows:
        books.setdefault(row["isbn13"], []).append(row["title"])
    return books


def _summary(out: str) -> dict[str, str]:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    counts = match.groupdict()
    assert int(counts["rows"]) == sum(
        int(counts[k]) for k in ("inserted", "updated", "unchanged", "skipped", "refused"))
    return counts


def test_a_mixed_csv_imports_every_good_row_and_refuses_each_bad_one_by_line(covr, db_url, tmp_path):
    rows = [
        "isbn13,title,authors,published_year",
        "9780306406157,Signal Processing,A. Author,1985",  # 2
        f"9780439023481,{'T' * 1_048_576},Long Winded,2001",  # 3: a megabyte title
        ",The Left Hand of Darkness,Ursula K. Le Guin,1969",  # 4: no ISBN
        "0-306-40615-2,Signal Processing Again,B. Author,1990",  # 5: the ISBN of line 2
        "9780306406158,Bad Checksum,C. Author,2000",  # 6
        "",  # 7: blank, not a row
        ",the left hand of darkness,\"Le Guin, Ursula K.\",",  # 8: the same ISBN-less book
        "043942089X,Harry Potter,J.K. Rowling,1998",  # 9
        ",Late,D. Author,2500",  # 10
    ]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    code, out, err = covr("catalog", "import", str(path))

    assert code == 0
    counts = _summary(out)
    assert (counts["rows"], counts["inserted"], counts["updated"], counts["unchanged"], counts["skipped"],
            counts["refused"]) == ("8", "3", "0", "0", "1", "4")  # fmt: skip
    assert counts["encoding"] == "utf-8"
    assert err.splitlines() == [
        "  line 3: title is 1048576 characters, over the 500 limit",
        "  line 5: duplicate of ISBN 9780306406157 on line 2; the first row wins",
        "  line 6: ISBN 9780306406158 has a bad checksum",
        "  line 10: published_year 2500 is outside 1400..2100",
    ]
    assert _books(db_url) == {
        "9780306406157": ["Signal Processing"],
        "9780439420891": ["Harry Potter"],
        None: ["The Left Hand of Darkness"],
    }

    # The same file again: the ISBN rows change nothing, the ISBN-less book is already there, the same rows are
    # refused.
    code, out, err = covr("catalog", "import", str(path))
    counts = _summary(out)
    assert (counts["inserted"], counts["updated"], counts["unchanged"], counts["skipped"], counts["refused"]) == (
        "0", "0", "2", "2", "4")  # fmt: skip

    # One row edited: that row is updated, the other ISBN row is still unchanged.
    path.write_text("\n".join(rows).replace("Harry Potter,J.K. Rowling,1998", "Harry Potter,J.K. Rowling,1997")
                    + "\n", encoding="utf-8")
    counts = _summary(covr("catalog", "import", str(path))[1])
    assert (counts["inserted"], counts["updated"], counts["unchanged"], counts["skipped"], counts["refused"]) == (
        "0", "1", "1", "2", "4")  # fmt: skip
    assert len(err.splitlines()) == 4
    assert len(_books(db_url)) == 3


def test_a_latin1_csv_is_imported_and_the_summary_names_the_encoding(covr, db_url, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("title,authors\nCafé Crème,Zoë Müller\nLes Misérables,Victor Hugo\n".encode("latin-1"))

    code, out, err = covr("catalog", "import", str(path))
    assert code == 0 and err == ""
    counts = _summary(out)
    assert (counts["rows"], counts["inserted"]) == ("2", "2")
    assert counts["encoding"] == "cp1252, detected, as byte 0xe9 on line 2 is not UTF-8"
    assert _books(db_url) == {None: ["Café Crème", "Les Misérables"]}

    code, out, _ = covr("catalog", "import", "--encoding", "latin-1", str(path))
    assert code == 0 and _summary(out)["encoding"] == "iso8859-1"
    assert _summary(out)["skipped"] == "2"

    code, out, err = covr("catalog", "import", "--encoding", "utf-8", str(path))
    assert (code, out) == (2, "")
    assert err == f"covr: {path} is not valid utf-8: byte 0xe9 on line 2 cannot be decoded\n"


def test_a_json_array_is_imported_row_by_row(covr, db_url, tmp_path):
    books = [
        {"isbn13": "9780306406157", "title": "Signal Processing", "authors": ["A. Author"]},
        {"isbn13": "9780306406158", "title": "Bad Checksum"},
        {"title": "No ISBN", "authors": ["Someone"]},
        {"isbn13": "978-0-306-40615-7", "title": "Duplicate"},
    ]
    path = tmp_path / "books.json"
    path.write_text("[\n" + ",\n".join(json.dumps(b) for b in books) + "\n]\n", encoding="utf-8")

    code, out, err = covr("catalog", "import", str(path))

    assert code == 0
    counts = _summary(out)
    assert (counts["rows"], counts["inserted"], counts["refused"]) == ("4", "2", "2")
    assert err.splitlines() == [
        "  line 3: ISBN 9780306406158 has a bad checksum",
        "  line 5: duplicate of ISBN 9780306406157 on line 2; the first row wins",
    ]
    assert _books(db_url) == {"9780306406157": ["Signal Processing"], None: ["No ISBN"]}


def test_an_empty_file_is_zero_rows(covr, db_url, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    code, out, err = covr("catalog", "import", str(path))
    assert (code, err) == (0, "")
    assert out == f"{path}: 0 rows: 0 inserted, 0 updated, 0 unchanged, 0 skipped, 0 refused (encoding utf-8)\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cover.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "is a PNG image, not a catalog file"),
        ("data.bin", b"title\n\x00\x01\x02\x03", "is binary, not a catalog file (a NUL character on line 2"),
        ("broken.json", b'[{"title": "A"},\n {"title": ', "broken.json: not a valid JSON array ("),
        ("people.csv", b"name,email\nann,a@example.org\n", "unrecognised catalog format"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line_and_exit_2(covr, db_url, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = covr("catalog", "import", str(path))
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("covr: ") and message in err, err
    assert _books(db_url) == {}


def test_an_unknown_encoding_and_a_missing_file_are_one_line(covr, tmp_path):
    path = tmp_path / "books.csv"
    path.write_text("title\nA\n", encoding="utf-8")
    assert covr("catalog", "import", "--encoding", "klingon", str(path)) == (
        2, "", f"covr: {path}: unknown encoding 'klingon'\n")  # fmt: skip
    assert covr("catalog", "import", str(tmp_path / "nope.csv")) == (
        2, "", f"covr: catalog file {tmp_path / 'nope.csv'} does not exist\n")  # fmt: skip


def test_the_real_command_on_a_binary_file_prints_no_traceback(db_url, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    result = subprocess.run(
        [sys.executable, "-m", "covr_pipelines.cli", "catalog", "import", str(path)],
        env={**os.environ, "DATABASE_URL": db_url, "COVR_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"covr: {path} is a JPEG image, not a catalog file\n"
    assert "Traceback" not in result.stderr


def test_cmd_demo_calls_the_handler_without_an_encoding(settings, db_url, tmp_path, capsys):
    from covr_pipelines.cli import cmd_catalog_import

    path = tmp_path / "catalog.jsonl"
    path.write_text('{"isbn13": "9780306406157", "title": "Signal Processing"}\n', encoding="utf-8")
    assert cmd_catalog_import(argparse.Namespace(file=path), settings) == 0
    assert capsys.readouterr().out.endswith(
        ": 1 rows: 1 inserted, 0 updated, 0 unchanged, 0 skipped, 0 refused (encoding utf-8)\n")
    assert _books(db_url) == {"9780306406157": ["Signal Processing"]}
