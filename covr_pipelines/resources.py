"""Typed, swappable Dagster resources: postgres, object_store, ocr, barcode, metadata_provider, embedder, vectors."""


import os
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from covr_core.platform.settings import Settings


def _from_env(name: str, value: str | None) -> str | None:
    """`dg.EnvVar(name)` when the value came from that variable, so the Dagster UI shows its name, not a secret.

    Settings built in code (tests, `_execute` pointing a run at the embedded server) have no variable
    behind them; their values pass as they are.
    """
    if value is not None and os.environ.get(name) == value:
        return dg.EnvVar(name)
    return value


def _resolved(value: str | None) -> str | None:
    # Dagster resolves an EnvVar field when it initialises a resource for a run; the CLI also calls
    # resources directly (`build_resources(settings)["object_store"].store()`), where it does not.
    return value.get_value() if isinstance(value, dg.EnvVar) else value


class PostgresResource(dg.ConfigurableResource):
    """The system of record: DATABASE_URL, or embedded PostgreSQL in COVR_HOME/pg when unset."""

    database_url: str | None = None
    home: str = ".covr"
    # At least 2: a search reindex loads its documents on two connections at once.
    pool_max: int = Field(default=4, ge=2)

    _database = PrivateAttr(default=None)
    _lock = PrivateAttr(default_factory=threading.Lock)

    def database(self):
        from covr_core.platform.db import Database

        with self._lock:
            if self._database is None:
                settings = Settings(
                    home=Path(self.home), database_url=_resolved(self.database_url), db_pool_max=self.pool_max
                )
                self._database = Database.from_settings(settings)
            return self._database

    @contextmanager
    def connection(self):
        with self.database().connection() as conn:
            yield conn

    def teardown_after_execution(self, context) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None


class ObjectStoreResource(dg.ConfigurableResource, ABC):
    """Where uploads and derivatives live; assets annotate this base class."""

    @abstractmethod
    def store(self):
        """The domain ObjectStore behind this resource."""


class LocalObjectStoreResource(ObjectStoreResource):
    """A local folder: the embedded default."""

    root: str

    _store = PrivateAttr(default=None)

    def store(self):
        from covr_core.media.storage import LocalObjectStore

        if self._store is None:
            self._store = LocalObjectStore(Path(self.root))
        return self._store


class S3ObjectStoreResource(ObjectStoreResource):
    """S3-compatible storage: MinIO, Cloudflare R2 or AWS."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    path_style: bool = True

    _store = PrivateAttr(default=None)

    def store(self):
        from covr_core.media.storage import S3ObjectStore

        if self._store is None:
            self._store = S3ObjectStore(
                bucket=self.bucket,
                endpoint_url=self.endpoint_url,
                region=self.region,
                access_key_id=_resolved(self.access_key_id),
                secret_access_key=_resolved(self.secret_access_key),
                path_style=self.path_style,
            )
        return self._store


class OcrResource(dg.ConfigurableResource):
    """Scene-text OCR: PP-OCR (rapidocr) by default; tesserocr in-process or pytesseract on request."""

    engine: str = "rapidocr"
    tessdata: str | None = None

    _local = PrivateAttr(default_factory=threading.local)

    def get_engine(self):
        """One engine per thread: a tesseract API handle must not be shared between threads."""
        from covr_core.identification.ocr import make_ocr_engine

        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = make_ocr_engine(self.engine, tessdata=self.tessdata)
            self._local.engine = engine
        return engine


class BarcodeResource(dg.ConfigurableResource):
    """EAN-13 ISBN barcodes with zxing-cpp."""

    def read(self, image):
        from covr_core.identification.barcode import read_isbn_barcode

        return read_isbn_barcode(image)


class MetadataProviderResource(dg.ConfigurableResource):
    """Book metadata by ISBN: the local catalog first, then Open Library when a URL is configured."""

    openlibrary_url: str | None = None
    min_interval_s: float = 1.0
    timeout_s: float = 5.0

    _client = PrivateAttr(default=None)

    def openlibrary(self, connect):
        if not self.openlibrary_url:
            return None
        if self._client is None:
            from covr_core.identification.openlibrary import OpenLibraryClient

            self._client = OpenLibraryClient(
                self.openlibrary_url, db=connect, min_interval_s=self.min_interval_s, timeout_s=self.timeout_s
            )
        return self._client


class EmbedderResource(dg.ConfigurableResource):
    """CLIP cover embeddings; off, with one warning, when no weights file is configured."""

    model: str = "ViT-B-32"
    weights: str | None = None
    allow_random: bool = False
    quantize: bool = False
    threads: int = 2

    _embedder = PrivateAttr(default=None)
    _disabled_reason = PrivateAttr(default=None)
    _lock = PrivateAttr(default_factory=threading.Lock)

    def get_embedder(self):
        """The loaded model, or None when the embedding stage is off; `disabled_reason` says why."""
        with self._lock:
            if self._embedder is None and self._disabled_reason is None:
                try:
                    from covr_core.identification.embedding import CoverEmbedder, EmbeddingDisabled
                except ImportError as exc:  # the `clip` extra is not installed
                    self._disabled_reason = f"open_clip is not installed ({exc}); the embedding stage is off"
                else:
                    try:
                        self._embedder = CoverEmbedder.load(
                            self.model,
                            Path(self.weights) if self.weights else None,
                            allow_random=self.allow_random,
                            quantize=self.quantize,
                            threads=self.threads,
                        )
                    except EmbeddingDisabled as exc:
                        self._disabled_reason = str(exc)
            return self._embedder

    @property
    def disabled_reason(self) -> str | None:
        return self._disabled_reason


class VectorStoreResource(dg.ConfigurableResource):
    """The cover-embedding read model: Qdrant when QDRANT_URL is set, else pgvector in the same Postgres."""

    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    pgvector_ef_search: int | None = None

    def get_store(self, postgres: PostgresResource):
        from covr_core.vectors.stores import PgVectorStore, QdrantVectorStore

        if self.qdrant_url:
            return QdrantVectorStore.from_url(self.qdrant_url, api_key=_resolved(self.qdrant_api_key))
        return PgVectorStore(postgres.connection, ef_search=self.pgvector_ef_search)


class IngestPolicyResource(dg.ConfigurableResource):
    """Limits and thresholds of ingest; defaults are the documented policy."""

    max_image_bytes: int = 40 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    phash_copy_distance: int = 6
    embedding_same_cover: float = 0.95
    embedding_identify: float = 0.90
    workers: int = 2


def _clip_weights(settings: Settings) -> str | None:
    """COVR_CLIP_WEIGHTS, else the weights `covr models fetch clip` recorded for this model, else none."""
    if settings.clip_weights:
        return str(settings.clip_weights)
    from covr_core.identification.models import fetched_clip

    fetched = fetched_clip(settings.home)
    return str(fetched[1]) if fetched and fetched[0] == settings.clip_model else None


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Translate the one Settings object into resources: only the adapters differ between deployments."""
    # Secrets (and DATABASE_URL, which may hold a password) go in as dg.EnvVar where the environment
    # supplied them, so the UI's resource config shows the variable's name instead of the value.
    postgres = PostgresResource(
        database_url=_from_env("DATABASE_URL", settings.database_url),
        home=str(settings.home.absolute()),
        pool_max=settings.db_pool_max,
    )
    if settings.uses_s3:
        object_store: ObjectStoreResource = S3ObjectStoreResource(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=_from_env("COVR_S3_ACCESS_KEY_ID", settings.s3_access_key_id),
            secret_access_key=_from_env(
                "COVR_S3_SECRET_ACCESS_KEY",
                settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None,
            ),
            path_style=settings.s3_path_style,
        )
    else:
        object_store = LocalObjectStoreResource(root=str(settings.objects_dir.absolute()))
    return {
        "postgres": postgres,
        "object_store": object_store,
        "ocr": OcrResource(engine=settings.ocr_engine, tessdata=settings.tessdata),
        "barcode": BarcodeResource(),
        "metadata_provider": MetadataProviderResource(openlibrary_url=settings.openlibrary_url),
        "embedder": EmbedderResource(
            model=settings.clip_model,
            weights=_clip_weights(settings),
            allow_random=settings.clip_allow_random,
            quantize=settings.clip_quantize,
        ),
        "vectors": VectorStoreResource(
            qdrant_url=settings.qdrant_url,
            qdrant_api_key=_from_env(
                "QDRANT_API_KEY", settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            ),
            pgvector_ef_search=settings.pgvector_ef_search,
        ),
        "policy": IngestPolicyResource(
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
            phash_copy_distance=settings.phash_copy_distance,
            embedding_same_cover=settings.embedding_same_cover,
        ),
    }
