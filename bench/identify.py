"""Identification benchmark: accuracy per condition on the hard photo set, ms per stage, the OCR engines compared,
and the whole ingest job on a mixed 12 MP batch.

Run by hand:  .venv/bin/python bench/identify.py [--seeds 9000-9003] [--size 1280x960] [--batch 32] [--no-ingest]
              [--no-tesseract]
Prints figures and ratios against baselines measured in the same run; it asserts nothing (the tests hold the floors).

Baselines, on the same pixels:
- tesseract on the whole photo (the engine before PP-OCR), through the same title match;
- the OCR engine called bare (rapidocr's own full pipeline: detect, classify and read every line), so the cost of
  what identification adds around it (prominent lines only, inverted re-reads) shows as a ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from covr_core.catalog.books import fold  # noqa: E402
from covr_core.identification.ocr import make_ocr_engine, ocr_for_identification  # noqa: E402
from covr_core.identification.recognition import Reading, identify_reading, known_books, read_photo  # noqa: E402
from covr_core.media.imaging import load_for_recognition  # noqa: E402
from ingest_runner import print_steps, time_ingest_job  # noqa: E402  (bench/, the script's own folder)
from covr_pipelines.hard_photos import (  # noqa: E402
    CONDITIONS,
    HELD_OUT_SEEDS,
    HardPhoto,
    hard_catalog,
    hard_photo,
)


def right(photo: HardPhoto, ident, conn) -> bool:
    """The photo's book, or (for a front cover) any edition of it: the text cannot tell editions apart."""
    if photo.side == "back" or ident.source == "isbn":
        return ident.isbn13 == photo.isbn13
    if ident.book_id is None:
        return False
    row = conn.execute("select title, authors from catalog.book where book_id = %s", (ident.book_id,)).fetchone()
    return row is not None and fold(row["title"]) == fold(photo.title) and row["authors"] == [photo.author]


def load_catalog(conn) -> None:
    with conn.cursor() as cur:
        cur.executemany("insert into catalog.book (title, authors, isbn13) values (%s, %s, %s)", hard_catalog())
    conn.commit()


def accuracy(conn, photos: list[HardPhoto], tesseract: bool) -> dict:
    engine = make_ocr_engine("rapidocr")
    tess = make_ocr_engine("tesserocr") if tesseract else None
    is_known = lambda isbn: bool(known_books(conn, [isbn]))  # noqa: E731
    by_condition: dict[str, list[bool]] = defaultdict(list)
    tess_by_condition: dict[str, list[bool]] = defaultdict(list)
    stage: dict[str, list[float]] = defaultdict(list)
    misses = []
    for photo in photos:
        t0 = time.perf_counter()
        image = load_for_recognition(photo.jpeg, mode="L")
        t1 = time.perf_counter()
        reading = read_photo(image, engine, is_known=is_known)
        t2 = time.perf_counter()
        ident = identify_reading(conn, reading)
        t3 = time.perf_counter()
        ok = right(photo, ident, conn)
        by_condition[photo.condition].append(ok)
        stage["decode"].append(t1 - t0)
        stage["barcode"].append(reading.timings_ms["barcode"] / 1e3)
        if reading.ocr is not None:
            stage["ocr"].append(reading.timings_ms["ocr"] / 1e3)
            # The bare engine on the same pixels: rapidocr's whole pipeline, every line.
            bgr = np.ascontiguousarray(np.asarray(_ocr_input(image).convert("RGB"))[:, :, ::-1])
            tb = time.perf_counter()
            engine._ocr(bgr, use_cls=True, use_rec=True)
            stage["ocr_bare_engine"].append(time.perf_counter() - tb)
            engine._ocr.update_params(use_cls=False, use_rec=False)
        stage["catalog"].append(t3 - t2)
        if not ok:
            misses.append((photo.name, photo.title, ident.title, ident.evidence.get("why")))
        if tess is not None and photo.side == "front":
            text = ocr_for_identification(tess, image)
            tr = Reading(ocr=text)
            tess_by_condition[photo.condition].append(right(photo, identify_reading(conn, tr), conn))
    return {"by_condition": by_condition, "tesseract": tess_by_condition, "stage": stage, "misses": misses}


def _ocr_input(image):
    from covr_core.identification.ocr import SCENE_TEXT_SIDE, _prepared

    return _prepared(image, SCENE_TEXT_SIDE, stretch=False)


def rate(values: list[bool]) -> str:
    return f"{sum(values):3d}/{len(values):<3d} {sum(values) / max(1, len(values)):6.0%}"


def report(result: dict) -> None:
    by_condition, tess = result["by_condition"], result["tesseract"]
    print(f"\n{'condition':22} {'PP-OCR cascade':>16} {'tesseract whole photo':>24}")
    for condition in CONDITIONS:
        if condition in by_condition:
            t = rate(tess[condition]) if condition in tess else "-"
            print(f"{condition:22} {rate(by_condition[condition]):>16} {t:>24}")
    fronts = [ok for c, v in by_condition.items() if not c.startswith("back") for ok in v]
    backs = [ok for c, v in by_condition.items() if c.startswith("back") for ok in v]
    tess_all = [ok for v in tess.values() for ok in v]
    print(f"{'title-only (fronts)':22} {rate(fronts):>16} {rate(tess_all) if tess_all else '-':>24}")
    print(f"{'barcode (backs)':22} {rate(backs):>16}")
    print(f"{'all':22} {rate(fronts + backs):>16}")
    worst = min(by_condition, key=lambda c: sum(by_condition[c]) / len(by_condition[c]))
    print(f"worst condition: {worst} {rate(by_condition[worst])}")
    print("\nms per image (median over the photos that ran the stage):")
    for name, values in result["stage"].items():
        print(f"  {name:16} {statistics.median(values) * 1e3:8.1f} ms  (n={len(values)})")
    if result["stage"].get("ocr") and result["stage"].get("ocr_bare_engine"):
        ratio = statistics.median(result["stage"]["ocr"]) / statistics.median(result["stage"]["ocr_bare_engine"])
        print(f"  OCR stage / bare engine call: {ratio:.2f}x (target <= 1.3x)")
    if result["misses"]:
        print("\nmisses:")
        for name, title, got, why in result["misses"]:
            print(f"  {name:28} {title!r:32} -> {got!r}: {why}")


def whole_ingest(batch: int) -> None:
    """One warm-up run, then one timed run of a mixed 12 MP batch (half back covers with barcodes, half fronts)."""
    print(f"\n== whole ingest: one Dagster run of {batch} 12 MP images, half barcode, half cover-only, CLIP off ==")
    photos = [hard_photo("back_cover" if i % 2 else "tilt", 500 + i, size=(4000, 3000)).jpeg for i in range(16)]
    load_before = os.getloadavg()[0]
    timing = time_ingest_job(photos, batch, warm_up=4, catalog=hard_catalog())
    load_after = os.getloadavg()[0]
    print_steps(timing)
    print(f"whole ingest: {batch} images in {timing.seconds:.1f} s = {timing.rate:.2f} img/s wall (target >= 4 img/s), "
          f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores")
    # The machine is shared: the wall figure moves with everyone else's load. This process's CPU time says what
    # two idle cores would do.
    per_image = timing.cpu_seconds / batch
    print(f"  CPU time of this process: {per_image:.2f} s per image -> {2 / per_image:.2f} img/s on 2 idle cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default=f"{HELD_OUT_SEEDS.start}-{HELD_OUT_SEEDS.start + 3}",
                        help="inclusive range, e.g. 0-3 (tuning) or 9000-9003 (held out)")
    parser.add_argument("--size", default="1280x960")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument("--no-tesseract", action="store_true")
    args = parser.parse_args()
    lo, hi = (int(v) for v in args.seeds.split("-"))
    w, h = (int(v) for v in args.size.split("x"))
    conditions = args.conditions.split(",")
    photos = [hard_photo(c, s, size=(w, h)) for s in range(lo, hi + 1) for c in conditions]
    print(f"{len(photos)} photos, {w}x{h}, seeds {lo}-{hi}, {len(conditions)} conditions")
    from covr_core.platform.db import start_embedded
    from covr_core.platform.migrations import migrate

    with tempfile.TemporaryDirectory() as tmp:
        server = start_embedded(Path(tmp) / "pg")
        with psycopg.connect(server.get_uri(), row_factory=dict_row) as conn:
            migrate(conn)
            load_catalog(conn)
            report(accuracy(conn, photos, tesseract=not args.no_tesseract))
        server.cleanup()
    if not args.no_ingest:
        whole_ingest(args.batch)


if __name__ == "__main__":
    main()
