-- The cover vectors' HNSW graph with 24 links per node instead of pgvector's default 16: on tightly clustered covers
-- (several photos of one edition) recall@10 at ef_search 40 went from 0.96-0.975 to 0.997 (bench/search.py; the
-- figures are in covr_core/vectors/stores.py beside HNSW_WITH, which every rebuild uses). Whatever the index is
-- called now (a rebuild names its own), it is replaced.
select set_config('maintenance_work_mem', '1GB', true)
where pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('1GB');

do $$
declare
    index_name text;
begin
    for index_name in
        select i.indexrelid::regclass::text
        from pg_index i
        join pg_class c on c.oid = i.indexrelid
        join pg_am a on a.oid = c.relam
        where i.indrelid = 'media.cover_embedding'::regclass and a.amname = 'hnsw'
    loop
        execute format('drop index %s', index_name);
    end loop;
end
$$;

create index cover_embedding_hnsw_idx on media.cover_embedding
    using hnsw (embedding vector_cosine_ops) with (m = 24, ef_construction = 64);
