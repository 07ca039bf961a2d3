"""Ingest benchmark: per-stage cost on 12 MP JPEGs, baselines from the same run, and whole Dagster runs.

Run by hand:  .venv/bin/python bench/ingest.py [--photos 16] [--batch 64] [--no-clip]
Prints figures and ratios; it asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imagehash  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from covr_core.identification.barcode import read_isbn_barcode  # noqa: E402
from covr_core.media.imaging import inspect_image, load_for_recognition  # noqa: E402
from covr_core.identification.ocr import make_ocr_engine, ocr_for_identification  # noqa: E402
from covr_pipelines.sample_photos import SAMPLE_BOOKS, cover_photo_jpeg, render_cover  # noqa: E402
from ingest_runner import print_steps, time_ingest_job  # noqa: E402  (bench/, the script's own folder)


def timed(fn, items, repeat: int = 1) -> list[float]:
    out = []
    for item in items:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(item)
            best = min(best, time.perf_counter() - t0)
        out.append(best)
    return out


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.1f} ms  ({1 / statistics.median(values):6.1f} img/s)"


def read_sha(path: Path) -> bytes:
    data = path.read_bytes()
    hashlib.sha256(data).hexdigest()
    return data


def hash_stage(path: Path) -> int:
    return inspect_image(path.read_bytes()).phash


def full_decode_phash(path: Path) -> str:
    return str(imagehash.phash(ImageOps.exif_transpose(Image.open(path))))


def draft_floor(path: Path) -> None:
    """The floor the hash stage is held to: read, sha256, JPEG draft decode and transpose, no pHash."""
    data = path.read_bytes()
    hashlib.sha256(data).digest()
    img = Image.open(BytesIO(data))
    img.draft("RGB", (img.width // 8, img.height // 8))
    ImageOps.exif_transpose(img.convert("RGB"))


def throughput(fn, paths: list[Path], workers: int = 2) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(fn, paths * 2))
    return 2 * len(paths) / (time.perf_counter() - t0)


def stages(paths: list[Path], isbns: list[str], clip: bool) -> dict[str, float]:
    print(f"\n== per-stage cost, {len(paths)} photos of 4000x3000 (median, one thread) ==")
    read = timed(read_sha, paths, 3)
    hashing = timed(hash_stage, paths, 3)
    floor = timed(draft_floor, paths, 3)
    full = timed(full_decode_phash, paths, 1)
    recog = timed(lambda p: load_for_recognition(p.read_bytes()), paths, 1)
    grays = [load_for_recognition(p.read_bytes()) for p in paths]
    found, barcode_t = [], []
    for gray, isbn in zip(grays, isbns):
        t0 = time.perf_counter()
        found.append(read_isbn_barcode(gray).isbn13 == isbn)
        barcode_t.append(time.perf_counter() - t0)
    engine = make_ocr_engine()
    covers = [render_cover(t, a, None, seed=i, style=i).convert("L") for i, (t, a, _) in enumerate(SAMPLE_BOOKS)]
    ocr_t = timed(lambda c: ocr_for_identification(engine, c), covers, 2)
    ocr_photo = timed(lambda g: ocr_for_identification(engine, g), grays[:6], 1)

    print(f"read + sha256            {ms(read)}")
    print(f"hash stage (draft+pHash) {ms(hashing)}")
    print(f"  draft-decode floor     {ms(floor)}")
    print(f"  full decode + phash    {ms(full)}   imagehash.phash(Image.open(f)), the baseline")
    print(f"recognition decode (1/2) {ms(recog)}")
    print(f"barcode (zxing EAN-13)   {ms(barcode_t)}")
    print(f"OCR, 1000x1500 cover     {ms(ocr_t)}")
    print(f"OCR, whole photo         {ms(ocr_photo)}")
    ratio_full = statistics.median(full) / statistics.median(hashing)
    ratio_floor = statistics.median(hashing) / statistics.median(floor)
    print(f"\nhash stage vs full decode: {ratio_full:.1f}x faster (target >= 4x)")
    print(f"hash stage vs draft floor: {ratio_floor:.2f}x the floor (target <= 1.3x)")
    hash_tp = throughput(hash_stage, paths)
    full_tp = throughput(full_decode_phash, paths)
    print(f"two processes: hash stage {hash_tp:.1f} img/s, full decode {full_tp:.1f} img/s, "
          f"ratio {hash_tp / full_tp:.1f}x")
    print(f"OCR per cover: {statistics.median(ocr_t) * 1e3:.0f} ms (target <= 80 ms)")
    print(f"barcode identified: {sum(found)}/{len(found)} = {sum(found) / len(found):.0%} (target >= 95%)")
    per_image = {
        "read": statistics.median(read), "hash": statistics.median(hashing), "decode": statistics.median(recog),
        "barcode": statistics.median(barcode_t), "ocr": statistics.median(ocr_photo),
    }
    if clip:
        from covr_core.identification.embedding import CoverEmbedder

        model = CoverEmbedder.load(allow_random=True, quantize=True, threads=2)
        rgb = [load_for_recognition(p.read_bytes(), mode="RGB") for p in paths]
        t0 = time.perf_counter()
        model.embed(rgb)
        per_image["embed"] = (time.perf_counter() - t0) / len(rgb)
        print(f"CLIP int8 (random init)  {per_image['embed'] * 1e3:7.1f} ms per image, batched")
    return per_image


def title_match_rate(n: int) -> None:
    """Barcode-less photos of catalogued books: how many does OCR + title match identify?"""
    import psycopg
    from psycopg.rows import dict_row

    from covr_core.catalog.books import BookRecord, import_books
    from covr_core.platform.db import start_embedded
    from covr_core.platform.migrations import migrate
    from covr_core.identification.title_match import match_title

    with tempfile.TemporaryDirectory() as tmp:
        server = start_embedded(Path(tmp) / "pg")
        with psycopg.connect(server.get_uri(), row_factory=dict_row) as conn:
            migrate(conn)
            import_books(conn, [BookRecord(isbn13=i, title=t, authors=[a]) for t, a, i in SAMPLE_BOOKS])
            conn.commit()
            engine = make_ocr_engine()
            hits = 0
            for k in range(n):
                title, author, isbn = SAMPLE_BOOKS[k % len(SAMPLE_BOOKS)]
                photo = cover_photo_jpeg(title, author, None, seed=100 + k, size=(4000, 3000))
                text = ocr_for_identification(engine, load_for_recognition(photo)).text
                best = match_title(conn, text, limit=2)
                hits += bool(best) and best[0].isbn13 == isbn
        server.cleanup()
    print(f"title match on barcode-less photos: {hits}/{n} = {hits / n:.0%} (target >= 85%)")


def whole_ingest(paths: list[Path], batch: int, clip: bool, per_image: dict[str, float]) -> None:
    """One warm-up run, then one timed run of `batch` distinct photos through the real ingest job."""
    print(f"\n== whole ingest: one Dagster run of {batch} images (after a warm-up run) ==")
    timing = time_ingest_job([p.read_bytes() for p in paths], batch, clip_allow_random=clip, clip_quantize=True)
    print_steps(timing)
    rate = timing.rate
    floor = 2 / sum(per_image.values())
    print(f"whole ingest: {batch} images in {timing.seconds:.1f} s = {rate:.1f} img/s (target >= 10 img/s)")
    print(f"sum-of-stages floor on 2 cores: {floor:.1f} img/s; ingest reaches {rate / floor:.0%} of it "
          f"(target >= 60%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--titles", type=int, default=20)
    parser.add_argument("--no-clip", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, isbns = [], []
        for i in range(args.photos):
            title, author, isbn = SAMPLE_BOOKS[i % len(SAMPLE_BOOKS)]
            path = Path(tmp) / f"photo-{i:02d}.jpg"
            path.write_bytes(cover_photo_jpeg(title, author, isbn, seed=i, size=(4000, 3000)))
            paths.append(path)
            isbns.append(isbn)
        per_image = stages(paths, isbns, clip=not args.no_clip)
        title_match_rate(args.titles)
        whole_ingest(paths, args.batch, not args.no_clip, per_image)


if __name__ == "__main__":
    main()
