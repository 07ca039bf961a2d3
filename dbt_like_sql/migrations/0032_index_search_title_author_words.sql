-- The title and author words of every search document, indexed on their own: a query's page is often found among
-- them alone (covr_core/search/embedded.py), without reading the thousands of copies a common word has in its
-- tags or notes. ts_filter keeps the tsvector's A and B lexemes with their positions, so phrases match as in tsv.
create or replace function search.create_document_indexes(documents text, terms text, generation integer) returns void
language plpgsql as $$
begin
    execute format('create index doc_g%2$s_tsv_idx on %1$s using gin (tsv)', documents, generation);
    execute format($ddl$create index doc_g%2$s_tsv_ab_idx on %1$s using gin (ts_filter(tsv, '{a,b}'))$ddl$,
                   documents, generation);
    execute format('create index doc_g%2$s_holder_idx on %1$s (current_holder_id)', documents, generation);
    execute format('create index doc_g%2$s_owner_idx on %1$s (owner_id)', documents, generation);
    execute format('create index doc_g%2$s_created_idx on %1$s (created_at desc, copy_id)', documents, generation);
    execute format('create index term_g%2$s_seq_idx on %1$s (seq)', terms, generation);
end
$$;

-- The live generation's table gets it now; the next reindex builds it with the rest.
do $$
begin
    execute format($ddl$create index doc_g%s_tsv_ab_idx on search.copy_document using gin (ts_filter(tsv, '{a,b}'))$ddl$,
                   (select generation from search.state));
end
$$;
