"""CoverEmbedder with a random-initialised ViT-B-32: shapes, determinism, loading, quantisation, decoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image, ImageDraw

from covr_core.identification.embedding import CoverEmbedder, EmbeddingDisabled, decode_for_embedding


def _cover(seed: int, size=(600, 900)) -> Image.Image:
    """A flat-coloured cover with a few shapes: structure that survives JPEG, unlike noise."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, size[0] - 50)), int(rng.integers(0, size[1] - 50))
        x1, y1 = x0 + int(rng.integers(40, size[0] // 2)), y0 + int(rng.integers(40, size[1] // 2))
        draw.rectangle((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


@pytest.fixture(scope="module")
def embedder() -> CoverEmbedder:
    return CoverEmbedder.load("ViT-B-32", allow_random=True, threads=2)


@pytest.fixture(scope="module")
def covers() -> list[Image.Image]:
    # One full-size photo among them so the cheap pre-reduction path runs too.
    return [_cover(i) for i in range(5)] + [_cover(5, size=(1000, 1500))]


def test_embeddings_are_unit_rows_of_512(embedder, covers):
    vectors = embedder.embed(covers)
    assert vectors.shape == (6, 512)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dim == 512
    assert embedder.model_id == "ViT-B-32:random-init"
    assert embedder.embed([]).shape == (0, 512)


def test_same_image_same_vector(embedder, covers):
    first = embedder.embed([covers[0]])
    again = embedder.embed([covers[0].copy()])
    np.testing.assert_allclose(first, again, atol=1e-6)


def test_batched_equals_unbatched(embedder, covers):
    batched = embedder.embed(covers, batch_size=4)
    one_by_one = np.vstack([embedder.embed([img], batch_size=1) for img in covers])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_no_weights_means_the_stage_is_off():
    with pytest.raises(EmbeddingDisabled) as excinfo:
        CoverEmbedder.load("ViT-B-32")
    assert str(excinfo.value) == "no CLIP weights configured (COVR_CLIP_WEIGHTS); the embedding stage is off"


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "clip" / "vit-b-32.pt"
    with pytest.raises(FileNotFoundError, match=f"CLIP weights file {missing} .*does not exist"):
        CoverEmbedder.load("ViT-B-32", missing)


def test_weights_file_round_trip(tmp_path: Path, covers):
    """The real loading path: a local checkpoint handed to open_clip as `pretrained`."""
    torch.manual_seed(1)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    weights = tmp_path / "vit-b-32-test.pt"
    torch.save(model.state_dict(), weights)

    loaded = CoverEmbedder.load("ViT-B-32", weights)
    direct = CoverEmbedder.from_model(model, preprocess, model_id="direct")

    assert loaded.model_id == "ViT-B-32:vit-b-32-test.pt"
    np.testing.assert_allclose(loaded.embed(covers[:3]), direct.embed(covers[:3]), atol=1e-5)


def test_quantized_stays_close_to_fp32(embedder, covers):
    quantized = CoverEmbedder.load("ViT-B-32", allow_random=True, quantize=True)
    assert quantized.model_id == "ViT-B-32:random-init:int8"
    cosine = np.sum(quantized.embed(covers) * embedder.embed(covers), axis=1)
    # Measured with random weights: min 0.9999; with real ViT-B-32 weights 0.9998.
    assert cosine.min() >= 0.99, cosine


def _jpeg(img: Image.Image, orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def test_jpeg_is_draft_decoded_and_exif_rotated():
    upright = _cover(8, size=(3000, 4000))
    # Orientation 6: stored rotated, viewers turn it 90 degrees clockwise back to upright.
    data = _jpeg(upright.transpose(Image.Transpose.ROTATE_90), orientation=6)
    decoded = decode_for_embedding(data)
    assert decoded.mode == "RGB"
    assert decoded.size == (750, 1000)  # libjpeg's 1/4 scale, the smallest still >= 448 on the short side


def test_embed_bytes_matches_the_decoded_image(embedder):
    upright = _cover(9, size=(900, 1200))
    data = _jpeg(upright.transpose(Image.Transpose.ROTATE_90), orientation=6)
    from_bytes = embedder.embed_bytes([data])
    from_image = embedder.embed([upright])
    # Measured 0.9999996; the same bytes without the EXIF turn score 0.9991 even with random weights.
    assert float(from_bytes[0] @ from_image[0]) > 0.9999


def test_undecodable_bytes_name_the_image(embedder):
    good = _jpeg(_cover(10))
    with pytest.raises(ValueError, match=r"image #1 \(11 bytes\) could not be decoded"):
        embedder.embed_bytes([good, b"not a jpeg!"])
