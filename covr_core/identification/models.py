"""Model weights Covr can fetch into COVR_HOME/models, and which fetched weights are the default.

Only the CLIP cover embedder needs weights from outside (the OCR models ship inside the rapidocr wheel). `covr models
fetch clip` downloads them with open_clip's own pretrained mechanism (its URL or Hugging Face hub entry for the
model and tag) and records them in COVR_HOME/models/clip.json; from then on that file is the default for
COVR_CLIP_WEIGHTS, which still wins when set.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DEFAULT_CLIP_PRETRAINED", "ClipFetchFailed", "fetch_clip", "fetched_clip"]

# LAION-2B ViT-B/32: open weights under the MIT licence, the tag open_clip recommends for ViT-B-32.
DEFAULT_CLIP_PRETRAINED = {"ViT-B-32": "laion2b_s34b_b79k"}


class ClipFetchFailed(RuntimeError):
    """The download did not happen; the message says which file to place where instead."""


def _record(home: Path) -> Path:
    return Path(home) / "models" / "clip.json"


def fetched_clip(home: Path) -> tuple[str, Path] | None:
    """(model name, weights file) recorded by `covr models fetch clip`, if the file is still there."""
    record = _record(home)
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    path = Path(data["weights"])
    return (data["model"], path) if path.is_file() else None


def fetch_clip(home: Path, model: str, pretrained: str | None = None) -> Path:
    """Download `model`'s `pretrained` weights into COVR_HOME/models and record them as the default."""
    import open_clip

    tag = pretrained or DEFAULT_CLIP_PRETRAINED.get(model)
    if tag is None:
        raise ClipFetchFailed(f"no default pretrained tag for {model}; pass one of "
                              f"{', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none known'}")
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        raise ClipFetchFailed(f"open_clip knows no pretrained weights {model}/{tag}")
    folder = Path(home) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(open_clip.download_pretrained(cfg, cache_dir=str(folder)))
    except Exception as exc:  # noqa: BLE001 - any network or hub failure gets the same instructions
        source = (f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}/resolve/main/open_clip_pytorch_model.bin"
                  if cfg.get("hf_hub") else cfg.get("url", "?"))
        target = folder / f"{model}-{tag}.bin"
        raise ClipFetchFailed(
            f"could not download {model}/{tag} ({type(exc).__name__}: {exc}). Without a network, fetch {source} "
            f"elsewhere and place it at {target}, then run: covr models fetch clip --file {target}"
        ) from exc
    return record_clip(home, model, path)


def record_clip(home: Path, model: str, path: Path) -> Path:
    """Make an existing weights file the default CLIP weights."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ClipFetchFailed(f"CLIP weights file {path} does not exist; place the file there first")
    record = _record(home)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"model": model, "weights": str(path)}) + "\n")
    return path
