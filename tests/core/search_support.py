"""Small catalogs for the search tests, written straight into the tables (test set-up only)."""

from __future__ import annotations

from contextlib import contextmanager

from psycopg.rows import dict_row


def connector(db_url: str, *, max_size: int = 4):
    """A `connect()` like the app's: a pool of autocommit connections with dict rows (closed at exit)."""
    import atexit

    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(db_url, min_size=1, max_size=max_size, open=True,
                          kwargs={"autocommit": True, "row_factory": dict_row})
    atexit.register(pool.close)

    @contextmanager
    def connect():
        with pool.connection() as conn:
            yield conn

    connect.pool = pool
    return connect


def user(conn, handle: str, name: str | None = None) -> str:
    return str(conn.execute("insert into contact.user (handle, display_name) values (%s, %s) returning user_id",
                            (handle, name or handle.title())).fetchone()["user_id"])


def befriend(conn, a: str, b: str) -> None:
    conn.execute("insert into contact.link (user_id, contact_id, status) values (%s, %s, 'accepted')", (a, b))


def book(conn, title: str, authors=(), *, year=None, tags=(), language=None, isbn13=None) -> str:
    return str(conn.execute(
        "insert into catalog.book (title, authors, published_year, tags, language, isbn13) "
        "values (%s, %s, %s, %s, %s, %s) returning book_id",
        (title, list(authors), year, list(tags), language, isbn13)).fetchone()["book_id"])


def copy(conn, book_id: str, owner: str, *, holder: str | None = None, status="available", grade=None,
         notes=None, tags=()) -> str:
    return str(conn.execute(
        "insert into catalog.copy (book_id, owner_id, current_holder_id, status, condition_grade, notes, tags) "
        "values (%s, %s, %s, %s, %s, %s, %s) returning copy_id",
        (book_id, owner, holder or owner, status, grade, notes, list(tags))).fetchone()["copy_id"])


def titles(result) -> list[str]:
    return [h["title"] for h in result.hits]


# --- generated catalogs and typo'd queries (also used by bench/search.py) ------------------------------------------

WORDS = """
shadow river garden winter summer autumn spring silent hidden golden silver broken secret forgotten ancient
northern southern eastern western island mountain valley forest desert ocean harbor castle kingdom empire
journey voyage return memory promise whisper thunder lightning midnight morning evening daughter mother father
brother sister stranger traveler soldier captain doctor teacher painter dancer singer writer reader keeper hunter
dragon phoenix serpent falcon raven sparrow tiger wolf lion horse orchard meadow harvest bridge tower lantern
mirror window letter library kitchen chapter history science mystery murder justice freedom courage honor glory
wonder dream shadowland starlight moonlight sunrise sunset horizon compass anchor engine machine program
pragmatic programmer algorithm structure pattern design system network language grammar poetry novel legend
chronicle saga prophecy rebellion revolution republic dynasty frontier wilderness paradise labyrinth cathedral
monastery pilgrim merchant emperor empress princess prince widow orphan inheritance betrayal obsession delusion
intelligence invisible impossible beautiful dangerous magnificent wonderful terrible marvelous curious peculiar
""".split()
FIRST = """Andrew David Frank Mary Jane Albert Ursula Toni Gabriel Haruki Chimamanda Kazuo Margaret Isabel Salman
Virginia Ernest Fyodor Leo Jorge Italo Doris Octavia Neil Terry Agatha Arthur Emily Charlotte George Herman Jules
Orhan Milan Wislawa Elena Roberto Clarice Naguib Yukio""".split()
LAST = """Hunt Thomas Herbert Keen Camus LeGuin Morrison Marquez Murakami Adichie Ishiguro Atwood Allende Rushdie
Woolf Hemingway Dostoevsky Tolstoy Borges Calvino Lessing Butler Gaiman Pratchett Christie Conan Bronte Eliot
Melville Verne Pamuk Kundera Szymborska Ferrante Bolano Lispector Mahfouz Mishima""".split()


def generated_books(n: int, seed: int = 7) -> list[dict]:
    """`n` books with titles of two to four words and one or two authors, all titles distinct."""
    import random

    rnd = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        words = rnd.sample(WORDS, rnd.randint(2, 4))
        title = " ".join(w.capitalize() for w in words)
        if rnd.random() < 0.3:
            title = "The " + title
        if title in seen:
            continue
        seen.add(title)
        authors = [f"{rnd.choice(FIRST)} {rnd.choice(LAST)}" for _ in range(rnd.choice((1, 1, 1, 2)))]
        out.append({"title": title, "authors": authors, "year": rnd.randint(1900, 2024),
                    "tags": rnd.sample(["fiction", "history", "science", "poetry", "travel", "classic"], 2)})
    return out


def _edit(word: str, rnd) -> str:
    """One edit, never on the first letter: a deletion, an insertion, a substitution or a swap of neighbours."""
    i = rnd.randrange(1, len(word))
    kind = rnd.choice(("delete", "insert", "substitute", "swap"))
    letter = rnd.choice("abcdefghijklmnopqrstuvwxyz")
    if kind == "delete":
        return word[:i] + word[i + 1:]
    if kind == "insert":
        return word[:i] + letter + word[i:]
    if kind == "swap" and i < len(word) - 1 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + (letter if letter != word[i] else "z" if word[i] != "z" else "y") + word[i + 1:]


def typo_queries(books: list[dict], n: int = 200, seed: int = 11) -> list[tuple[str, int, bool]]:
    """`n` (query, index of the book meant, whether the query is its author): a title or an author one or two edits
    away, within Meilisearch's typo budget (one edit in a typed word of 5 letters or more, two in one of 9 or more,
    or one in each of two words)."""
    import random

    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        index = rnd.randrange(len(books))
        b = books[index]
        text = b["title"] if rnd.random() < 0.7 else b["authors"][0]
        words = text.split()
        long_enough = [i for i, w in enumerate(words) if len(w) >= 5]
        if not long_enough:
            continue
        edits = rnd.choice((1, 2))
        nine = [i for i in long_enough if len(words[i]) >= 9]
        if edits == 2 and nine and rnd.random() < 0.5:
            i = rnd.choice(nine)
            words[i] = _edit(_edit(words[i], rnd), rnd)
            edited = {i: 2}
        elif edits == 2 and len(long_enough) >= 2:
            edited = {i: 1 for i in rnd.sample(long_enough, 2)}
            for i in edited:
                words[i] = _edit(words[i], rnd)
        else:
            i = rnd.choice(long_enough)
            words[i] = _edit(words[i], rnd)
            edited = {i: 1}
        # The budget is the typed word's length, as in Meilisearch: "dream" cut to "deam" gets no typo.
        if any(len(words[i]) < (9 if n == 2 else 5) for i, n in edited.items()):
            continue
        query = " ".join(words).lower()
        if query != text.lower():
            out.append((query, index, text is not b["title"]))
    return out


def typo_hit(books: list[dict], index: int, by_author: bool, hits: list[dict]) -> bool:
    """The right result of a typo'd title is that book; of a typo'd author, any book of that author's (an author
    with sixty books cannot have them all in a top ten)."""
    if not by_author:
        return books[index]["book_id"] in {h["book_id"] for h in hits}
    author = books[index]["authors"][0]
    return any(author in h["authors"] for h in hits)
