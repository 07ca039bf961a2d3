"""Photos for tests: a catalog book's cover photographed, and hostile files, built on covr_pipelines.sample_photos."""

from __future__ import annotations

import struct
import zlib

from covr_pipelines.sample_photos import cover_photo_jpeg


def cover_photo(book: dict, *, seed: int = 0, size=(1600, 1200), barcode: bool = True, **kw) -> bytes:
    """A phone JPEG of `book`'s cover (a catalog row: isbn13, title, authors); 1600x1200 keeps tests fast."""
    return cover_photo_jpeg(book["title"], book["authors"][0], book["isbn13"], seed=seed, size=size,
                            barcode=barcode, **kw)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` but carries no pixel data; nothing is allocated."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    pixels = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + pixels + chunk(b"IEND", b"")
