"""Find the book in a photo: its quadrilateral, and the cover warped flat for OCR filtering and the embedding.

A phone photo shows the book on a desk, often with papers, a mug or a newspaper around it. Text on those papers
is not the book's, and a cover embedding of the whole frame is mostly desk. The book's outline is the largest
convex four-sided shape that edges outline, book-shaped (height/width 1.15-2.0 either way round), near the middle,
and not a sheet of white paper. Pure: numpy and OpenCV on pixels handed in, nothing else.

The whole-photo pHash is not computed here and must not be: the same-photo rules compare framing, which is signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["CoverQuad", "find_cover", "rectified"]

# Working size for the search: outlines survive at 480 px and the search costs a few ms.
_SEARCH_SIDE = 480
# A cover smaller than this share of the frame cannot be told from the desk's clutter; 30% of the height is ~6%.
_MIN_AREA = 0.035
_MAX_AREA = 0.97
_BOOK_ASPECT = (1.15, 2.0)


@dataclass(frozen=True)
class CoverQuad:
    """The book's corners as fractions of the image's width and height: top-left, top-right, bottom-right,
    bottom-left in the image's frame; `area` is the share of the frame it covers, `score` how book-like it looked."""

    corners: tuple[tuple[float, float], ...]
    area: float
    score: float

    def contains(self, x: float, y: float, margin: float = 0.04) -> bool:
        """Whether the point (fractions of width and height) lies inside the quad grown by `margin` of its size."""
        import cv2

        pts = np.array(self.corners, np.float32)
        centre = pts.mean(axis=0)
        grown = centre + (pts - centre) * (1 + 2 * margin)
        return cv2.pointPolygonTest(grown.reshape(-1, 1, 2), (float(x), float(y)), False) >= 0

    def evidence(self) -> dict:
        return {"corners": [[round(x, 4), round(y, 4)] for x, y in self.corners], "area": round(self.area, 4),
                "score": round(self.score, 4)}


def _order(pts: np.ndarray) -> np.ndarray:
    """Corners in the order top-left, top-right, bottom-right, bottom-left."""
    s = pts.sum(axis=1)
    d = np.diff(pts, axis=1).ravel()
    return np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]], np.float32)


def find_cover(image: Image.Image) -> CoverQuad | None:
    """The book's quadrilateral, or None when no outline looks like one (then use the whole photo)."""
    import cv2

    rgb = image.convert("RGB")
    scale = _SEARCH_SIDE / max(rgb.size)
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BOX)
    arr = np.asarray(small)
    h, w = arr.shape[:2]
    lab = cv2.cvtColor(cv2.GaussianBlur(arr, (5, 5), 0), cv2.COLOR_RGB2LAB)
    # Edges in lightness and in both colour axes: a book can be as light as the desk and differ only in hue.
    edges = np.zeros((h, w), np.uint8)
    for channel in cv2.split(lab):
        median = float(np.median(channel))
        edges |= cv2.Canny(channel, max(10, 0.5 * median), max(30, 1.2 * median))
    edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    frame = float(w * h)
    best: tuple[float, np.ndarray, float] | None = None
    gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    for contour in contours:
        hull = cv2.convexHull(contour)
        area = cv2.contourArea(hull)
        if not (_MIN_AREA * frame <= area <= _MAX_AREA * frame):
            continue
        approx = cv2.approxPolyDP(hull, 0.03 * cv2.arcLength(hull, True), True)
        if len(approx) == 4:
            quad = approx.reshape(4, 2).astype(np.float32)
        else:
            # Rounded or clipped corners: the hull's minimum-area rectangle, if the hull nearly fills it.
            rect = cv2.minAreaRect(hull)
            if area < 0.88 * rect[1][0] * rect[1][1]:
                continue
            quad = cv2.boxPoints(rect).astype(np.float32)
        quad = _order(quad)
        sides = [np.linalg.norm(quad[i] - quad[(i + 1) % 4]) for i in range(4)]
        long_, short = max(sides[0] + sides[2], sides[1] + sides[3]), min(sides[0] + sides[2], sides[1] + sides[3])
        aspect = long_ / max(1.0, short)
        if not (_BOOK_ASPECT[0] <= aspect <= _BOOK_ASPECT[1]):
            continue
        # Fill of the contour itself in its hull: a cover's outline is a closed loop of edge pixels.
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, quad.astype(np.int32), 255)
        inside = gray[mask > 0]
        # A sheet of paper is bright and nearly uniform; covers are seldom both.
        paper = float(inside.mean()) > 205 and float(np.percentile(inside, 10)) > 150
        centre = quad.mean(axis=0) / np.array([w, h], np.float32)
        off_centre = float(np.linalg.norm(centre - 0.5))
        score = (area / frame) * (0.35 if paper else 1.0) * (1.0 - 0.8 * off_centre)
        if best is None or score > best[0]:
            best = (score, quad, area / frame)
    if best is None:
        return None
    score, quad, area = best
    corners = tuple((float(x) / w, float(y) / h) for x, y in quad)
    return CoverQuad(corners=corners, area=area, score=score)


def rectified(image: Image.Image, quad: CoverQuad, long_side: int = 1024) -> Image.Image:
    """The cover warped to a flat upright-or-sideways rectangle (the photo's own orientation), long side `long_side`."""
    import cv2

    w, h = image.size
    pts = np.array([(x * w, y * h) for x, y in quad.corners], np.float32)
    width = (np.linalg.norm(pts[0] - pts[1]) + np.linalg.norm(pts[3] - pts[2])) / 2
    height = (np.linalg.norm(pts[0] - pts[3]) + np.linalg.norm(pts[1] - pts[2])) / 2
    s = long_side / max(width, height, 1.0)
    out_w, out_h = max(1, round(width * s)), max(1, round(height * s))
    target = np.array([(0, 0), (out_w - 1, 0), (out_w - 1, out_h - 1), (0, out_h - 1)], np.float32)
    matrix = cv2.getPerspectiveTransform(pts, target)
    arr = np.asarray(image)
    warped = cv2.warpPerspective(arr, matrix, (out_w, out_h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(warped)
