"""Which backend a deployment searches: Meilisearch when MEILI_URL is set, else Postgres full-text in one database."""

from __future__ import annotations

from covr_core.platform.settings import Settings
from covr_core.search.backend import Connect, SearchBackend


def backend_from_settings(settings: Settings, connect: Connect) -> SearchBackend:
    if settings.meili_url:
        from covr_core.search.meili import MeiliSearch

        key = settings.meili_master_key.get_secret_value() if settings.meili_master_key else None
        return MeiliSearch(settings.meili_url, api_key=key, connect=connect)
    from covr_core.search.embedded import PostgresSearch

    return PostgresSearch(connect)
