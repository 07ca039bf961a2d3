"""ISBN checksums, normalisation, and extraction of ISBN-13s from noisy OCR text."""

from __future__ import annotations

import re

__all__ = [
    "find_isbns_in_text",
    "is_valid_isbn10",
    "is_valid_isbn13",
    "isbn10_to_13",
    "isbn13_check_digit",
    "normalize_isbn",
]

_SEPARATORS = " \t-\u2010\u2011\u2012\u2013\u2014\u2212"


def isbn13_check_digit(first12: str) -> str:
    """Check digit for the first 12 digits of an ISBN-13 / EAN-13."""
    if len(first12) != 12 or not first12.isdigit():
        raise ValueError(f"ISBN-13 check digit needs 12 digits, got {first12!r}")
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(first12))
    return str((10 - total % 10) % 10)


def is_valid_isbn13(s: str) -> bool:
    """True for 13 ASCII digits with a correct EAN-13 check digit (978/979 prefix not required)."""
    if len(s) != 13 or not (s.isascii() and s.isdigit()):
        return False
    return isbn13_check_digit(s[:12]) == s[12]


def is_valid_isbn10(s: str) -> bool:
    """True for 9 digits plus a digit-or-X check character with a correct mod-11 checksum."""
    if len(s) != 10 or not s.isascii():
        return False
    body, check = s[:9], s[9].upper()
    if not body.isdigit() or not (check.isdigit() or check == "X"):
        return False
    total = sum(int(c) * (10 - i) for i, c in enumerate(body))
    total += 10 if check == "X" else int(check)
    return total % 11 == 0


def isbn10_to_13(isbn10: str) -> str:
    """The 978-prefixed ISBN-13 for a valid ISBN-10 (hyphens and spaces allowed)."""
    compact = _strip_separators(isbn10)
    if not is_valid_isbn10(compact):
        raise ValueError(f"not a valid ISBN-10: {isbn10!r}")
    first12 = "978" + compact[:9]
    return first12 + isbn13_check_digit(first12)


def normalize_isbn(s: str) -> str | None:
    """The ISBN-13 for an ISBN-10 or ISBN-13 written with optional hyphens/spaces and "ISBN" label; None if invalid."""
    compact = _strip_separators(_LABEL.sub("", s.strip(), count=1))
    if is_valid_isbn13(compact) and compact.startswith(("978", "979")):
        return compact
    if is_valid_isbn10(compact):
        return isbn10_to_13(compact)
    return None


def _strip_separators(s: str) -> str:
    return "".join(c for c in s if c not in _SEPARATORS)


# OCR misreads of digits. Applied only to characters inside a digit run, and a candidate may contain at most
# _MAX_SUBSTITUTIONS of them, so ordinary words are never turned into numbers.
_CONFUSIONS = {
    "O": "0", "o": "0", "D": "0", "Q": "0",
    "I": "1", "l": "1", "|": "1", "i": "1", "!": "1",
    "Z": "2", "z": "2",
    "S": "5", "s": "5",
    "G": "6", "b": "6",
    "B": "8",
    "g": "9", "q": "9",
}  # fmt: skip
_MAX_SUBSTITUTIONS = 4
_DIGITLIKE = "0-9Xx" + re.escape("".join(_CONFUSIONS))
# A run is digit-like characters joined by separators OCR produces between digit groups (hyphens read as dashes,
# dots or tildes; spaces; line breaks when the number wraps).
_RUN = re.compile(rf"[{_DIGITLIKE}]+(?:[\s\-\u2010-\u2015\u2212_.~]+[{_DIGITLIKE}]+)*")
_GROUP_SPLIT = re.compile(r"[\s\-\u2010-\u2015\u2212_.~]+")
# "ISBN", "ISBN-13:", "ISBN10", "lSBN" (OCR reads I as l, 1 or |). Masked before runs are found so the "10"/"13"
# of the label never joins the number.
_LABEL = re.compile(r"[I1l|]\s?S\s?B\s?N(?:\s?[-\u2010-\u2015]?\s?1\s?[03])?\s*[:.]?", re.IGNORECASE)
# An ISBN-10 must follow a label closely: unlabelled 10-digit numbers (phone numbers, prices) pass mod 11 by chance.
_LABEL_REACH = 6


def find_isbns_in_text(text: str) -> list[str]:
    """ISBN-13s found in OCR text, in reading order, deduplicated, checksum-valid only; ISBN-10s come back as 13s.

    A 978/979 ISBN-13 is accepted anywhere (barcode captions often lack the "ISBN" label); an ISBN-10 only right
    after an ISBN label.
    """
    label_ends: list[int] = []
    masked = list(text)
    for m in _LABEL.finditer(text):
        label_ends.append(m.end())
        masked[m.start() : m.end()] = " " * (m.end() - m.start())
    masked_text = "".join(masked)

    found: list[str] = []
    for run in _RUN.finditer(masked_text):
        for isbn in _isbns_in_run(run.group(), run.start(), label_ends, text):
            if isbn not in found:
                found.append(isbn)
    return found


def _isbns_in_run(run: str, run_start: int, label_ends: list[int], text: str) -> list[str]:
    groups: list[tuple[int, str]] = []  # (offset in text, group chars)
    pos = 0
    for part in _GROUP_SPLIT.split(run):
        pos = run.index(part, pos)
        groups.append((run_start + pos, part))
        pos += len(part)

    results: list[str] = []
    i = 0
    while i < len(groups):
        hit = _candidate_from(groups, i, label_ends, text)
        if hit is None:
            i += 1
            continue
        isbn, used = hit
        results.append(isbn)
        i += used
    return results


def _candidate_from(groups: list[tuple[int, str]], i: int, label_ends: list[int], text: str) -> tuple[str, int] | None:
    """An ISBN-13 built from groups[i:], and how many groups it used; 13-digit readings win over 10-digit ones."""
    start_offset, first = groups[i]
    if len(first) > 13:
        # OCR dropped a separator (e.g. fused the EAN add-on); look for a 978/979 start inside the group.
        for m in re.finditer(r"97[89]", first):
            digits = _as_digits(first[m.start() : m.start() + 13], allow_x=False)
            if digits and is_valid_isbn13(digits):
                return digits, 1
        return None

    joined = ""
    for j in range(i, len(groups)):
        joined += groups[j][1]
        if len(joined) == 10 and _labelled(start_offset, label_ends, text):
            digits = _as_digits(joined, allow_x=True)
            if digits and is_valid_isbn10(digits):
                # Keep going in case the groups actually spell an ISBN-13; fall back to this one otherwise.
                thirteen = _extend_to_13(groups, j + 1, joined)
                if thirteen is not None:
                    return thirteen[0], j - i + 1 + thirteen[1]
                return isbn10_to_13(digits), j - i + 1
        if len(joined) == 13:
            digits = _as_digits(joined, allow_x=False)
            if digits and digits.startswith(("978", "979")) and is_valid_isbn13(digits):
                return digits, j - i + 1
            return None
        if len(joined) > 13:
            return None
    return None


def _extend_to_13(groups: list[tuple[int, str]], j: int, joined: str) -> tuple[str, int] | None:
    for k in range(j, len(groups)):
        joined += groups[k][1]
        if len(joined) == 13:
            digits = _as_digits(joined, allow_x=False)
            if digits and digits.startswith(("978", "979")) and is_valid_isbn13(digits):
                return digits, k - j + 1
            return None
        if len(joined) > 13:
            return None
    return None


def _as_digits(chars: str, *, allow_x: bool) -> str | None:
    """Digits for a candidate after undoing OCR confusions, or None if it needs too many fixes to be trusted."""
    out = []
    substitutions = 0
    for idx, c in enumerate(chars):
        if c.isdigit() and c.isascii():
            out.append(c)
        elif c in "Xx" and allow_x and idx == len(chars) - 1:
            out.append("X")
        elif c in _CONFUSIONS:
            out.append(_CONFUSIONS[c])
            substitutions += 1
        else:
            return None
    if substitutions > _MAX_SUBSTITUTIONS or substitutions * 2 >= len(chars):
        return None
    return "".join(out)


def _labelled(start: int, label_ends: list[int], text: str) -> bool:
    for end in label_ends:
        if end <= start and start - end <= _LABEL_REACH and not any(c.isalnum() for c in text[end:start]):
            return True
    return False
