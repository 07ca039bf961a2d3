"""The cover-embedding read model behind one interface: pgvector in the same Postgres, or Qdrant."""

from __future__ import annotations

import struct
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import dict_row, tuple_row

if TYPE_CHECKING:  # imported lazily at run time: qdrant_client pulls in grpc
    from qdrant_client import QdrantClient

DIM = 512
# Fixed forever: Qdrant point ids are derived from it, so changing it would orphan every stored point.
POINT_NAMESPACE = uuid.UUID("5b0e7c1e-6f43-4c55-9d2a-3f1c0b7a2e91")
# pgvector refuses hnsw.ef_search above 1000.
MAX_EF_SEARCH = 1000
# bench/search.py, 100k vectors in 5000 tight clusters, 24 links per node: recall@10 0.967-0.993 at 20, 0.993-1.0 at
# 30, 0.997-1.0 at 40 (two builds), p99 growing ~15% per step; 40 keeps recall above 0.99 whichever graph a build
# makes. 1M vectors need ~200 for 0.98 (Settings.pgvector_ef_search).
DEFAULT_EF_SEARCH = 40
# The HNSW graph's build parameters (pgvector's defaults are m 16, ef_construction 64), for migration 0033 and every
# rebuild. 100k vectors in 5000 tight clusters (bench/search.py), HNSW built each way on the same data: recall@10 at
# ef_search 40 was 0.959-0.975 with 16 links per node (three builds) and 0.997 with 24, for about twice the build
# time (76-95 s); 32 links gained nothing more at 40. The index's size stays 260 MB.
HNSW_WITH = "m = 24, ef_construction = 64"
# Building the graph in memory is several times faster than spilling it: ~2.7 kB a vector (260 MB at 100k, 2.6 GB
# at 1M). A rebuild raises the session's maintenance_work_mem to this, never lowers a larger server setting.
HNSW_BUILD_MEMORY = "1GB"


@dataclass(frozen=True)
class CoverPoint:
    image_id: str
    vector: Sequence[float] | np.ndarray
    copy_id: str | None
    book_id: str | None
    kind: str
    sha256: str
    model: str


@dataclass(frozen=True)
class VectorHit:
    image_id: str
    score: float  # cosine similarity, 1 = identical direction
    copy_id: str | None
    book_id: str | None
    kind: str
    sha256: str


class VectorStore(ABC):
    """Rebuildable from media.image: every write is an idempotent upsert keyed by image_id."""

    dim: int = DIM

    @abstractmethod
    def ensure_collection(self) -> None: ...

    @abstractmethod
    def upsert(self, points: Sequence[CoverPoint]) -> None: ...

    @abstractmethod
    def search(
        self,
        vector: Sequence[float] | np.ndarray,
        *,
        limit: int = 10,
        score_threshold: float | None = None,
        exclude_image_ids: Sequence[str] = (),
    ) -> list[VectorHit]: ...

    @abstractmethod
    def delete(self, image_ids: Sequence[str]) -> None: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def describe(self) -> str: ...


def _image_id(value: str) -> str:
    """Canonical lower-case form, so 'ABC…' and 'abc…' are the same point in both backends."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"image_id {value!r} is not a UUID (media.image.image_id)") from None


def _optional_uuid(value: str | None, field: str, image_id: str) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"image {image_id}: {field} {value!r} is not a UUID") from None


def _vector(values: Sequence[float] | np.ndarray, dim: int, what: str) -> np.ndarray:
    """float32, checked once for both backends: cosine is undefined for a zero vector and NaN poisons an index."""
    array = np.asarray(values, dtype=np.float32).ravel()
    if array.shape[0] != dim:
        raise ValueError(f"{what}: vector has {array.shape[0]} dimensions, the store holds {dim}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what}: vector contains NaN or infinity")
    if not np.any(array):
        raise ValueError(f"{what}: vector is all zeros; cosine similarity is undefined")
    return array


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"search limit must be at least 1, got {limit}")


class PgVectorStore(VectorStore):
    """media.cover_embedding with an HNSW cosine index; the default when no Qdrant is configured.

    Vectors are written as text literals and searched for in pgvector's binary format, both cast to ::vector, so
    no type adapter has to be registered on the pool's connections (which may be opened before the migration that
    creates the extension).
    """

    TABLE = "media.cover_embedding"

    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[psycopg.Connection]],
        *,
        ef_search: int | None = None,
    ) -> None:
        """`ef_search` None: DEFAULT_EF_SEARCH (Settings.pgvector_ef_search passes through as it is)."""
        ef_search = DEFAULT_EF_SEARCH if ef_search is None else ef_search
        if not 1 <= ef_search <= MAX_EF_SEARCH:
            raise ValueError(f"ef_search must be between 1 and {MAX_EF_SEARCH}, got {ef_search}")
        self._connect = connect
        self.ef_search = ef_search

    def ensure_collection(self) -> None:
        """The table belongs to migration 0004; check it is there with the dimension this code writes."""
        with self._connect() as conn:
            row = conn.cursor(row_factory=dict_row).execute(
                "select a.atttypmod as dim from pg_attribute a "
                "where a.attrelid = to_regclass(%s) and a.attname = 'embedding' and not a.attisdropped",
                (self.TABLE,),
            ).fetchone()
        if row is None:
            raise RuntimeError(f"{self.TABLE} does not exist in this database; run `covr db migrate`")
        if row["dim"] != self.dim:
            raise RuntimeError(
                f"{self.TABLE}.embedding is vector({row['dim']}) but embeddings have {self.dim} dimensions"
            )

    def upsert(self, points: Sequence[CoverPoint]) -> None:
        if not points:
            return
        with self._connect() as conn, conn.transaction():
            self.upsert_in(conn, points)

    def upsert_in(self, conn: psycopg.Connection, points: Sequence[CoverPoint]) -> None:
        """Write inside the caller's transaction, e.g. together with the media.image row it describes."""
        rows = []
        for p in points:
            image_id = _image_id(p.image_id)
            vector = _vector(p.vector, self.dim, f"image {image_id}").tolist()
            rows.append(
                (
                    image_id,
                    p.model,
                    _literal(vector),
                    _optional_uuid(p.copy_id, "copy_id", image_id),
                    _optional_uuid(p.book_id, "book_id", image_id),
                    p.kind,
                    p.sha256,
                )
            )
        if not rows:
            return
        # created_at stays the first time the image was embedded; everything else follows the latest run.
        conn.cursor().executemany(
            f"insert into {self.TABLE} (image_id, model, embedding, copy_id, book_id, kind, sha256) "
            "values (%s, %s, %s::vector, %s, %s, %s, %s) "
            "on conflict (image_id) do update set model = excluded.model, embedding = excluded.embedding, "
            "copy_id = excluded.copy_id, book_id = excluded.book_id, kind = excluded.kind, sha256 = excluded.sha256",
            rows,
        )

    def search(
        self,
        vector: Sequence[float] | np.ndarray,
        *,
        limit: int = 10,
        score_threshold: float | None = None,
        exclude_image_ids: Sequence[str] = (),
    ) -> list[VectorHit]:
        _check_limit(limit)
        query = _QueryVector(_vector(vector, self.dim, "search query"))
        excluded = {_image_id(i) for i in exclude_image_ids}
        # Excluded ids are dropped after a plain ORDER BY ... LIMIT, which the HNSW index serves directly;
        # HNSW returns at most ef_search rows, so it must cover the extra rows fetched.
        fetch = limit + len(excluded)
        ef_search = min(max(self.ef_search, fetch), MAX_EF_SEARCH)
        # One round trip: in a pipeline both statements reach the server before one Sync, so they share one implicit
        # transaction, and the local ef_search holds for the search and ends with it.
        with self._connect() as conn, conn.pipeline():
            conn.execute("select set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
            cur = conn.cursor(row_factory=dict_row)
            cur.adapters.register_dumper(_QueryVector, _QueryVectorDumper)
            rows = cur.execute(
                f"select image_id, copy_id, book_id, kind, sha256, embedding <=> %b::vector as distance "
                f"from {self.TABLE} order by distance limit %s",
                (query, fetch),
            ).fetchall()
        hits = []
        for row in rows:
            image_id = str(row["image_id"])
            score = 1.0 - float(row["distance"])
            if image_id in excluded or (score_threshold is not None and score < score_threshold):
                continue
            hits.append(
                VectorHit(
                    image_id=image_id,
                    score=score,
                    copy_id=None if row["copy_id"] is None else str(row["copy_id"]),
                    book_id=None if row["book_id"] is None else str(row["book_id"]),
                    kind=row["kind"],
                    sha256=row["sha256"],
                )
            )
        return hits[:limit]

    def delete(self, image_ids: Sequence[str]) -> None:
        ids = [_image_id(i) for i in image_ids]
        if not ids:
            return
        with self._connect() as conn, conn.transaction():
            conn.execute(f"delete from {self.TABLE} where image_id = any(%s::uuid[])", (ids,))

    def count(self) -> int:
        with self._connect() as conn:
            return conn.cursor(row_factory=tuple_row).execute(f"select count(*) from {self.TABLE}").fetchone()[0]

    def describe(self) -> str:
        return f"pgvector {self.TABLE} ({self.dim}-d, HNSW cosine, ef_search={self.ef_search})"


class _QueryVector(bytes):
    """A vector in pgvector's binary input format (dimensions, a reserved zero, then big-endian float4s): formatting
    512 floats as a text literal took a fifth of a search's time."""

    def __new__(cls, values: np.ndarray) -> _QueryVector:
        return super().__new__(cls, struct.pack(">HH", len(values), 0) + values.astype(">f4").tobytes())


class _QueryVectorDumper(Dumper):
    # No oid: the server takes the parameter's type from its cast to ::vector, with no adapter to register first.
    format = Format.BINARY

    def dump(self, obj: _QueryVector) -> bytes:
        return bytes(obj)


def _literal(vector: list[float]) -> str:
    # repr of a float32 widened to float64 round-trips exactly through pgvector's float4 parser.
    return "[" + ",".join(map(repr, vector)) + "]"


class QdrantVectorStore(VectorStore):
    """A Qdrant collection of cosine vectors; point id = UUIDv5(POINT_NAMESPACE, image_id)."""

    def __init__(
        self, client: QdrantClient, *, collection: str = "cover_embeddings", dim: int = DIM, label: str | None = None
    ):
        self._client = client
        self.collection = collection
        self.dim = dim
        self._label = label or "local"

    @classmethod
    def from_url(
        cls, url: str, api_key: str | None = None, *, collection: str = "cover_embeddings"
    ) -> QdrantVectorStore:
        from qdrant_client import QdrantClient

        return cls(QdrantClient(url=url, api_key=api_key), collection=collection, label=url)

    @staticmethod
    def point_id(image_id: str) -> str:
        return str(uuid.uuid5(POINT_NAMESPACE, _image_id(image_id)))

    def ensure_collection(self) -> None:
        from qdrant_client import models

        if not self._client.collection_exists(self.collection):
            try:
                self._client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE),
                )
            except Exception:
                # Another worker may have created it between the check and the create.
                if not self._client.collection_exists(self.collection):
                    raise
        params = self._client.get_collection(self.collection).config.params.vectors
        if isinstance(params, dict):  # named vectors: not a layout this store writes
            raise RuntimeError(
                f"Qdrant collection {self.collection} uses named vectors {sorted(params)}; expected one unnamed vector"
            )
        if params.size != self.dim or params.distance != models.Distance.COSINE:
            raise RuntimeError(
                f"Qdrant collection {self.collection} holds {params.size}-d {params.distance} vectors; "
                f"this store needs {self.dim}-d Cosine: delete the collection and rebuild it from media.image"
            )

    def upsert(self, points: Sequence[CoverPoint]) -> None:
        from qdrant_client import models

        structs = []
        for p in points:
            image_id = _image_id(p.image_id)
            structs.append(
                models.PointStruct(
                    id=self.point_id(image_id),
                    vector=_vector(p.vector, self.dim, f"image {image_id}").tolist(),
                    payload={
                        "image_id": image_id,
                        "copy_id": _optional_uuid(p.copy_id, "copy_id", image_id),
                        "book_id": _optional_uuid(p.book_id, "book_id", image_id),
                        "kind": p.kind,
                        "sha256": p.sha256,
                    },
                )
            )
        for start in range(0, len(structs), 256):
            self._client.upsert(self.collection, points=structs[start : start + 256], wait=True)

    def search(
        self,
        vector: Sequence[float] | np.ndarray,
        *,
        limit: int = 10,
        score_threshold: float | None = None,
        exclude_image_ids: Sequence[str] = (),
    ) -> list[VectorHit]:
        from qdrant_client import models

        _check_limit(limit)
        query = _vector(vector, self.dim, "search query").tolist()
        excluded = [self.point_id(i) for i in exclude_image_ids]
        query_filter = models.Filter(must_not=[models.HasIdCondition(has_id=excluded)]) if excluded else None
        response = self._client.query_points(
            self.collection,
            query=query,
            limit=limit,
            score_threshold=score_threshold,
            query_filter=query_filter,
            with_payload=True,
            with_vectors=False,
        )
        return [
            VectorHit(
                image_id=p.payload["image_id"],
                score=float(p.score),
                copy_id=p.payload.get("copy_id"),
                book_id=p.payload.get("book_id"),
                kind=p.payload["kind"],
                sha256=p.payload["sha256"],
            )
            for p in response.points
        ]

    def delete(self, image_ids: Sequence[str]) -> None:
        from qdrant_client import models

        ids = [self.point_id(i) for i in image_ids]
        if ids:
            self._client.delete(self.collection, points_selector=models.PointIdsList(points=ids), wait=True)

    def count(self) -> int:
        return self._client.count(self.collection, exact=True).count

    def describe(self) -> str:
        return f"qdrant {self._label} collection {self.collection} ({self.dim}-d, cosine)"


__all__ = [
    "CoverPoint",
    "PgVectorStore",
    "QdrantVectorStore",
    "VectorHit",
    "VectorStore",
]
