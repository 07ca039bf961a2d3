"""CLIP image embeddings of cover photos: unit vectors whose cosine similarity says "same cover"."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

# JPEG draft decoding lets libjpeg scale by 1/2..1/8 in the DCT: 27 ms instead of 110 ms for 12 MP.
DRAFT_SIZE = (448, 448)
# Random-init weights are seeded so that dev runs in different processes produce comparable vectors.
RANDOM_INIT_SEED = 0


class EmbeddingDisabled(RuntimeError):
    """No usable weights: the embedding stage is off (not an error in deployments without CLIP)."""


class CoverEmbedder:
    """The image tower of an open_clip model plus its preprocessing; the text tower is dropped."""

    def __init__(self, visual: torch.nn.Module, preprocess, *, model_id: str, dim: int, input_size: int):
        self._visual = visual.eval()
        self._preprocess = preprocess
        self.model_id = model_id
        self._dim = dim
        self._input_size = input_size

    @classmethod
    def load(
        cls,
        model_name: str = "ViT-B-32",
        weights: Path | None = None,
        *,
        allow_random: bool = False,
        quantize: bool = False,
        threads: int | None = None,
    ) -> CoverEmbedder:
        """Build `model_name` with the weights in a local checkpoint file (never fetched from a hub).

        The architecture must match the checkpoint: OpenAI's ViT-B/32 weights need "ViT-B-32-quickgelu".
        """
        if threads is not None:
            # Process-wide in torch; the pipeline runs one embedder per process.
            torch.set_num_threads(threads)
        if weights is not None:
            weights = Path(weights).expanduser().resolve()
            if not weights.is_file():
                raise FileNotFoundError(
                    f"CLIP weights file {weights} (COVR_CLIP_WEIGHTS) does not exist or is not a file; "
                    f"download an open_clip checkpoint for {model_name} there, or unset COVR_CLIP_WEIGHTS"
                )
            # An absolute path can never be mistaken for a pretrained tag such as "openai", so nothing is downloaded.
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(weights))
            model_id = f"{model_name}:{weights.name}"
        elif allow_random:
            log.warning(
                "CLIP %s runs with random-initialised weights (COVR_CLIP_ALLOW_RANDOM): embeddings are "
                "meaningless and only good for exercising the pipeline",
                model_name,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
            model_id = f"{model_name}:random-init"
        else:
            raise EmbeddingDisabled("no CLIP weights configured (COVR_CLIP_WEIGHTS); the embedding stage is off")
        return cls.from_model(model, preprocess, model_id=model_id, quantize=quantize)

    @classmethod
    def from_model(cls, model: torch.nn.Module, preprocess, *, model_id: str, quantize: bool = False) -> CoverEmbedder:
        """Keep only `model.visual`; the text tower is about 40% of ViT-B-32's memory and never used here."""
        visual = model.visual.eval()
        dim = int(visual.output_dim)
        size = visual.image_size
        input_size = int(max(size) if isinstance(size, (tuple, list)) else size)
        if quantize:
            # int8 Linear layers: 38 img/s vs 21 fp32 on 2 cores, cosine >= 0.9998 to fp32 with real weights.
            visual = torch.ao.quantization.quantize_dynamic(visual, {torch.nn.Linear}, dtype=torch.qint8)
            model_id = f"{model_id}:int8"
        return cls(visual, preprocess, model_id=model_id, dim=dim, input_size=input_size)

    @property
    def dim(self) -> int:
        return self._dim

    def _prepare(self, img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        # Integer box reduction to about twice the input size first: the transform's bicubic resize of a
        # full-size photo costs more than the model itself; 2x keeps the bicubic step's antialiasing quality.
        factor = min(img.size) // (2 * self._input_size)
        if factor >= 2:
            img = img.reduce(factor)
        return self._preprocess(img)

    def embed(self, images: list[Image.Image], batch_size: int = 16) -> np.ndarray:
        """One L2-normalised float32 row per image, shape (n, dim)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        out = np.empty((len(images), self._dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = torch.stack([self._prepare(img) for img in images[start : start + batch_size]])
                features = torch.nn.functional.normalize(self._visual(batch).float(), dim=-1)
                out[start : start + len(batch)] = features.numpy()
        return out

    def embed_bytes(self, data_list: list[bytes], batch_size: int = 16) -> np.ndarray:
        """Decode (JPEG in draft mode, EXIF orientation applied) and embed encoded image files."""
        return self.embed([decode_for_embedding(data, index=i) for i, data in enumerate(data_list)], batch_size)

    def __repr__(self) -> str:
        return f"CoverEmbedder({self.model_id!r}, dim={self._dim})"


def decode_for_embedding(data: bytes, *, index: int = 0) -> Image.Image:
    """An RGB image at least DRAFT_SIZE on its short side, decoded as cheaply as the format allows."""
    try:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", DRAFT_SIZE)  # a no-op for formats other than JPEG
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"image #{index} ({len(data)} bytes) could not be decoded for embedding: {exc}") from exc
