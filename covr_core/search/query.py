"""Pure parsing of what a searcher types: the query's words, a filter expression, sort fields, typo budgets.

Nothing here touches a database or an index. The filter syntax is Meilisearch's, so one expression means the same on
both backends: `status = available AND (tags = sci-fi OR published_year >= 2000)`, `condition_grade 5 TO 8`,
`language IN [en, fr]`, `NOT status = lost`, `notes EXISTS`-style operators are not supported (see FILTERABLE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

from covr_core.search.document import FILTERABLE, SORTABLE, fold
from covr_core.shared.errors import InvalidInput
from covr_core.shared.ids import is_uuid

# Meilisearch's defaults (typoTolerance.minWordSizeForTypos): one typo from 5 letters, two from 9.
ONE_TYPO_FROM, TWO_TYPOS_FROM = 5, 9
MAX_QUERY_WORDS = 10
MAX_QUERY_CHARS = 500
MAX_FILTER_CHARS = 2000

NUMERIC_FIELDS = ("condition_grade", "published_year")
UUID_FIELDS = ("current_holder_id", "owner_id")
ARRAY_FIELDS = ("tags",)
# Array filters ignore case. The embedded documents table keeps each such array lower-cased beside it, written with
# folded_array_sql, so a filter is one array containment a row: lower-casing tags at search time cost 0.55 us a row,
# 3 ms of a filtered search's p99 over 100k copies (bench/search.py).
FOLDED_ARRAYS = {"tags": "tag_keys"}


def folded_array_sql(column: str) -> str:
    """An array lower-cased through its text form: its quoting and escapes have no letters, so lower() keeps them."""
    return f"lower({column}::text)::text[]"


def typo_budget(word: str) -> int:
    """How many edits a query word may be away from an indexed word."""
    if len(word) >= TWO_TYPOS_FROM:
        return 2
    if len(word) >= ONE_TYPO_FROM:
        return 1
    return 0


@dataclass(frozen=True)
class Term:
    """One query word (or a quoted phrase of several, matched exactly and adjacent)."""

    words: tuple[str, ...]
    prefix: bool = False  # the last word of the query as typed: also matches words it begins
    quoted: bool = False  # "a phrase": exact words, adjacent, no typos

    @property
    def typos(self) -> int:
        return 0 if self.quoted else typo_budget(self.words[0])


@dataclass(frozen=True)
class ParsedQuery:
    text: str
    terms: tuple[Term, ...]

    @property
    def is_placeholder(self) -> bool:
        """No words: every visible document matches, in sort order."""
        return not self.terms

    @property
    def key(self) -> str:
        """The folded query, compared with a folded title for exactness."""
        return " ".join(w for t in self.terms for w in t.words)

    def without_last(self) -> ParsedQuery:
        return ParsedQuery(self.text, self.terms[:-1])

    def only(self, keep) -> ParsedQuery:
        return ParsedQuery(self.text, tuple(t for t in self.terms if keep(t)))


_QUOTED = re.compile(r'"([^"]*)"')


def parse_query(text: str | None) -> ParsedQuery:
    """Words folded like the documents; `"..."` is an exact phrase; the last bare word is a prefix unless the
    query ends in a space (search-as-you-type)."""
    text = text or ""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query is {len(text)} characters, over the {MAX_QUERY_CHARS} limit")
    terms: list[Term] = []
    pos = 0
    for match in _QUOTED.finditer(text):
        terms.extend(Term((w,)) for w in fold(text[pos:match.start()]).split())
        phrase = tuple(fold(match.group(1)).split())
        if phrase:
            terms.append(Term(phrase, quoted=True))
        pos = match.end()
    tail = text[pos:]
    terms.extend(Term((w,)) for w in fold(tail).split())
    if len(terms) > MAX_QUERY_WORDS:
        terms = terms[:MAX_QUERY_WORDS]
    elif terms and not terms[-1].quoted and tail.strip() and not tail.endswith(" "):
        terms[-1] = Term(terms[-1].words, prefix=True)
    return ParsedQuery(text, tuple(terms))


# --- filters ----------------------------------------------------------------------------------------------------

Value = Union[str, int, float]


@dataclass(frozen=True)
class Compare:
    field: str
    op: str  # = != > >= < <=
    value: Value


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Range:
    field: str
    low: Value
    high: Value


@dataclass(frozen=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    item: Filter


Filter = Union[Compare, In, Range, And, Or, Not]

_TOKEN = re.compile(r"""\s*(?:
    (?P<op>!=|>=|<=|=|>|<)
  | (?P<punct>[()\[\],])
  | "(?P<dq>(?:[^"\\]|\\.)*)"
  | '(?P<sq>(?:[^'\\]|\\.)*)'
  | (?P<word>[^\s()\[\],=!<>"']+))""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "TO"}


@dataclass
class _Tok:
    kind: str  # op punct str word kw
    text: str
    pos: int


def _tokens(expr: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise InvalidInput(f"filter: cannot read {expr[pos:pos + 20]!r} at character {pos + 1}")
        start = m.start(m.lastgroup)
        if m.group("op"):
            out.append(_Tok("op", m.group("op"), start))
        elif m.group("punct"):
            out.append(_Tok("punct", m.group("punct"), start))
        elif m.group("dq") is not None or m.group("sq") is not None:
            raw = m.group("dq") if m.group("dq") is not None else m.group("sq")
            out.append(_Tok("str", re.sub(r"\\(.)", r"\1", raw), start))
        else:
            word = m.group("word")
            out.append(_Tok("kw" if word.upper() in _KEYWORDS else "word", word, start))
        pos = m.end()
    return out


@dataclass
class _Parser:
    expr: str
    toks: list[_Tok]
    i: int = 0
    depth: int = field(default=0)

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise InvalidInput(f"filter {self.expr!r} ends too early")
        self.i += 1
        return tok

    def is_kw(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "kw" and tok.text.upper() == word

    def expect(self, kind: str, text: str) -> None:
        tok = self.take()
        if tok.kind != kind or tok.text.upper() != text:
            raise InvalidInput(f"filter: expected {text!r} at character {tok.pos + 1}, found {tok.text!r}")

    def parse_or(self) -> Filter:
        items = [self.parse_and()]
        while self.is_kw("OR"):
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Filter:
        items = [self.parse_not()]
        while self.is_kw("AND"):
            self.take()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> Filter:
        if self.is_kw("NOT"):
            self.take()
            return Not(self.parse_not())
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == "(":
            self.take()
            self.depth += 1
            if self.depth > 20:
                raise InvalidInput("filter nests parentheses more than 20 deep")
            inner = self.parse_or()
            self.expect("punct", ")")
            self.depth -= 1
            return inner
        return self.parse_condition()

    def value(self) -> str:
        tok = self.take()
        if tok.kind not in ("word", "str"):
            raise InvalidInput(f"filter: expected a value at character {tok.pos + 1}, found {tok.text!r}")
        return tok.text

    def parse_condition(self) -> Filter:
        tok = self.take()
        if tok.kind != "word":
            raise InvalidInput(f"filter: expected an attribute at character {tok.pos + 1}, found {tok.text!r}")
        name = tok.text
        if name not in FILTERABLE:
            raise InvalidInput(f"filter: {name!r} is not filterable; filterable: {', '.join(FILTERABLE)}")
        nxt = self.peek()
        if nxt is None:
            raise InvalidInput(f"filter {self.expr!r} ends after {name!r}")
        if nxt.kind == "op":
            self.take()
            return Compare(name, nxt.text, _coerce(name, self.value(), nxt.text))
        negated = False
        if self.is_kw("NOT"):
            self.take()
            negated = True
            if not self.is_kw("IN"):
                raise InvalidInput(f"filter: expected IN after {name} NOT")
        if self.is_kw("IN"):
            self.take()
            self.expect("punct", "[")
            values = [_coerce(name, self.value(), "=")]
            while (t := self.peek()) is not None and t.kind == "punct" and t.text == ",":
                self.take()
                values.append(_coerce(name, self.value(), "="))
            self.expect("punct", "]")
            return In(name, tuple(values), negated=negated)
        low = _coerce(name, self.value(), ">=")
        self.expect("kw", "TO")
        return Range(name, low, _coerce(name, self.value(), "<="))


def _coerce(name: str, raw: str, op: str) -> Value:
    if name in NUMERIC_FIELDS:
        try:
            number = float(raw)
        except ValueError:
            raise InvalidInput(f"filter: {name} compares with numbers, not {raw!r}") from None
        return int(number) if number.is_integer() else number
    if op not in ("=", "!="):
        raise InvalidInput(f"filter: {name} {op} {raw!r}: only numbers compare with {op}")
    if name in UUID_FIELDS:
        if not is_uuid(raw):
            raise InvalidInput(f"filter: {name} is a member id (a uuid), not {raw!r}")
        return raw.lower()
    return raw


def parse_filter(expr: str | None) -> Filter | None:
    """A Meilisearch filter expression as a tree; InvalidInput naming the place it went wrong."""
    if expr is None or not expr.strip():
        return None
    if len(expr) > MAX_FILTER_CHARS:
        raise InvalidInput(f"filter is {len(expr)} characters, over the {MAX_FILTER_CHARS} limit")
    parser = _Parser(expr, _tokens(expr))
    tree = parser.parse_or()
    if parser.peek() is not None:
        tok = parser.peek()
        raise InvalidInput(f"filter: unexpected {tok.text!r} at character {tok.pos + 1}")
    return tree


def _meili_value(value: Value) -> str:
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_meili(tree: Filter) -> str:
    """The tree back as a Meilisearch filter string, every value quoted: what reaches the index is what we parsed."""
    if isinstance(tree, Compare):
        return f"{tree.field} {tree.op} {_meili_value(tree.value)}"
    if isinstance(tree, In):
        values = ", ".join(_meili_value(v) for v in tree.values)
        return f"{tree.field} {'NOT IN' if tree.negated else 'IN'} [{values}]"
    if isinstance(tree, Range):
        return f"{tree.field} {_meili_value(tree.low)} TO {_meili_value(tree.high)}"
    if isinstance(tree, Not):
        return f"NOT ({to_meili(tree.item)})"
    joiner = " AND " if isinstance(tree, And) else " OR "
    return "(" + joiner.join(to_meili(i) for i in tree.items) + ")"


def to_sql(tree: Filter, params: dict, alias: str = "d") -> str:
    """The tree as a SQL predicate on the documents table; values go into `params`. String equality ignores case,
    as Meilisearch's does; `!=` and NOT match documents without the attribute, as Meilisearch's do."""

    def param(value: Value) -> str:
        name = f"f{len(params)}"
        params[name] = value
        return f"%({name})s"

    def cmp(name: str, op: str, value: Value) -> str:
        col = f"{alias}.{name}"
        if name in ARRAY_FIELDS:
            has = f"({alias}.{FOLDED_ARRAYS[name]} @> array[lower({param(value)})])"
            return has if op == "=" else f"not {has}"
        if name in UUID_FIELDS:
            expr, p = col, f"{param(value)}::uuid"
        elif name in NUMERIC_FIELDS:
            expr, p = col, f"{param(value)}::numeric"
        else:
            expr, p = f"lower({col})", f"lower({param(value)})"
        if op == "!=":
            return f"({expr} is distinct from {p})"
        return f"coalesce({expr} {op} {p}, false)"

    if isinstance(tree, Compare):
        return cmp(tree.field, tree.op, tree.value)
    if isinstance(tree, In):
        inner = " or ".join(cmp(tree.field, "=", v) for v in tree.values)
        return f"(not ({inner}))" if tree.negated else f"({inner})"
    if isinstance(tree, Range):
        return f"({cmp(tree.field, '>=', tree.low)} and {cmp(tree.field, '<=', tree.high)})"
    if isinstance(tree, Not):
        return f"(not {to_sql(tree.item, params, alias)})"
    joiner = " and " if isinstance(tree, And) else " or "
    return "(" + joiner.join(to_sql(i, params, alias) for i in tree.items) + ")"


# --- sorting ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sort:
    field: str
    descending: bool = False

    def meili(self) -> str:
        return f"{self.field}:{'desc' if self.descending else 'asc'}"


def parse_sort(spec: str | list[str] | None) -> tuple[Sort, ...]:
    """`title`, `published_year:desc`, or several separated by commas; only sortable attributes."""
    if not spec:
        return ()
    parts = spec if isinstance(spec, list) else spec.split(",")
    out = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        name, _, direction = part.partition(":")
        name, direction = name.strip(), (direction.strip().lower() or "asc")
        if name not in SORTABLE:
            raise InvalidInput(f"sort: {name!r} is not sortable; sortable: {', '.join(SORTABLE)}")
        if direction not in ("asc", "desc"):
            raise InvalidInput(f"sort: direction {direction!r} of {name} is neither asc nor desc")
        out.append(Sort(name, direction == "desc"))
    return tuple(out)


def parse_facets(spec: str | list[str] | None) -> tuple[str, ...]:
    """Facet attributes (any filterable one), e.g. `status,tags`."""
    if not spec:
        return ()
    parts = spec if isinstance(spec, list) else spec.split(",")
    names = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    for name in names:
        if name not in FILTERABLE:
            raise InvalidInput(f"facet {name!r} is not filterable; facets: {', '.join(FILTERABLE)}")
    return names
