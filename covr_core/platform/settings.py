"""One Settings object for every entry point; anything unset means the embedded default."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read once per entry point (CLI, Dagster definitions, API app), never at import time."""

    # Aliases are the environment names; field names still work as keyword arguments. Environment
    # names match case-insensitively, so no alias may be a bare word like "home" (that reads $HOME).
    model_config = SettingsConfigDict(env_prefix="COVR_", extra="ignore", populate_by_name=True)

    home: Path = Field(default=Path(".covr"), validation_alias="COVR_HOME")
    # The Dagster instance the CLI records its runs in and `make dagster` shows. Unset: COVR_HOME/dagster.
    dagster_home_override: Path | None = Field(default=None, validation_alias="DAGSTER_HOME")

    # System of record. Unset: embedded PostgreSQL (pgserver) in COVR_HOME/pg.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # At least 2: a search reindex loads its documents on two connections at once (search/embedded.py LOAD_SHARES).
    db_pool_max: int = Field(default=8, ge=2)

    # Object storage. Unset endpoint and bucket: a local folder in COVR_HOME/objects.
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_path_style: bool = True

    # Read models. Unset: Postgres full-text search and pgvector in the same database.
    meili_url: str | None = Field(default=None, validation_alias="MEILI_URL")
    meili_master_key: SecretStr | None = Field(
        default=None, validation_alias="MEILI_MASTER_KEY"
    )
    qdrant_url: str | None = Field(default=None, validation_alias="QDRANT_URL")
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias="QDRANT_API_KEY"
    )
    # pgvector's HNSW candidate list per search; unset: the store's default (40). Larger collections need more for
    # the same recall: 1M covers ~200 (README, Benchmarks).
    pgvector_ef_search: int | None = Field(default=None, ge=1, le=1000)

    # Notifications by mail. Unset host: notifications stay in the database only.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "covr@localhost"
    # Where the run-failure sensor mails its alerts (COVR_OPERATOR_EMAIL); unset: alerts are only recorded.
    operator_email: str | None = None
    # The Dagster UI's address as the operator opens it, for links in alerts.
    dagster_ui_url: str = "http://127.0.0.1:3000"

    # API. Unset secret: one is generated into COVR_HOME/token-secret and shared by every worker on it.
    token_secret: SecretStr | None = None
    access_token_ttl_s: int = Field(default=900, ge=10, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=60)
    login_max_failures_per_handle: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_window_s: int = Field(default=900, ge=1)
    max_upload_bytes: int = Field(default=40 * 1024 * 1024, ge=1)
    # Where browsers reach S3 for presigned uploads, when that differs from s3_endpoint_url (inside compose).
    s3_public_endpoint_url: str | None = None

    # Ingest.
    ingest_batch_size: int = Field(default=64, ge=1, le=1024)
    max_image_bytes: int = 40 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    ocr_engine: str = "rapidocr"
    tessdata: str | None = None
    openlibrary_url: str | None = None  # e.g. https://openlibrary.org; unset keeps the client off

    # Cover embeddings. No weights file: the embedding stage is off, with one warning.
    clip_model: str = "ViT-B-32"
    clip_weights: Path | None = None
    clip_allow_random: bool = False
    clip_quantize: bool = False

    # Dedup thresholds.
    phash_copy_distance: int = Field(default=6, ge=0, le=16)
    embedding_same_cover: float = 0.95

    # Provenance ledger. The Ed25519 key that signs checkpoints: PEM text in COVR_LEDGER_SIGNING_KEY, else the
    # PEM file COVR_LEDGER_SIGNING_KEY_FILE (unset: COVR_HOME/ledger/signing-key.pem, which `covr ledger keygen`
    # writes). After a rotation, the old public keys (64 hex digits each, a JSON list) stay trusted here.
    ledger_signing_key: SecretStr | None = None
    ledger_signing_key_file: Path | None = None
    ledger_trusted_keys: list[str] = Field(default_factory=list)

    @property
    def pg_data_dir(self) -> Path:
        return self.home / "pg"

    @property
    def dagster_home(self) -> Path:
        """Absolute, as Dagster requires of DAGSTER_HOME."""
        return (self.dagster_home_override or self.home / "dagster").absolute()

    @property
    def objects_dir(self) -> Path:
        return self.home / "objects"

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_bucket)
