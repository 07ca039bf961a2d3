-- Uploaded images: metadata only, the bytes stay in object storage.
create table media.image (
    image_id         uuid primary key default gen_random_uuid(),
    object_key       text not null unique,
    etag             text,
    uploader_id      uuid not null references contact.user,
    status           text not null check (status in ('accepted', 'rejected')),
    rejection_reason text,
    sha256           text check (sha256 ~ '^[0-9a-f]{64}$'),
    phash            bigint,
    byte_size        bigint not null check (byte_size >= 0),
    format           text check (format in ('jpeg', 'png', 'webp', 'heif')),
    width            integer check (width > 0),
    height           integer check (height > 0),
    kind             text not null default 'cover_front'
                     check (kind in ('cover_front', 'cover_back', 'spine', 'other')),
    copy_id          uuid references catalog.copy,
    normalized_key   text,
    thumbnail_key    text,
    created_at       timestamptz not null default now(),
    -- Multi-index hashing: the 64-bit pHash split 21/21/22 bits, each chunk indexed.
    phash_c0         integer generated always as (((phash >> 43) & 2097151)::integer) stored,
    phash_c1         integer generated always as (((phash >> 22) & 2097151)::integer) stored,
    phash_c2         integer generated always as ((phash & 4194303)::integer) stored,
    check ((status = 'rejected') = (rejection_reason is not null)),
    check (status = 'rejected' or (sha256 is not null and phash is not null and format is not null))
);
create index image_sha256_idx on media.image (sha256) where status = 'accepted';
create index image_copy_idx on media.image (copy_id);
create index image_uploader_idx on media.image (uploader_id, created_at);
create index image_phash_c0_idx on media.image (phash_c0) include (phash, image_id) where phash is not null;
create index image_phash_c1_idx on media.image (phash_c1) include (phash, image_id) where phash is not null;
create index image_phash_c2_idx on media.image (phash_c2) include (phash, image_id) where phash is not null;

-- Cover embeddings in pgvector: the embedded default of the vector read model.
create table media.cover_embedding (
    image_id   uuid primary key references media.image,
    model      text not null,
    embedding  vector(512) not null,
    copy_id    uuid references catalog.copy,
    book_id    uuid references catalog.book,
    kind       text not null,
    sha256     text not null,
    created_at timestamptz not null default now()
);
create index cover_embedding_hnsw_idx on media.cover_embedding using hnsw (embedding vector_cosine_ops);
