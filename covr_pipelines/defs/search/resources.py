"""The copies index as a resource: Meilisearch when MEILI_URL is set, else Postgres full-text in the same database."""

from __future__ import annotations

import os

import dagster as dg

from covr_core.platform.settings import Settings


class SearchResource(dg.ConfigurableResource):
    """The search backend behind covr_core.search.backends; the master key arrives as dg.EnvVar, never its value."""

    meili_url: str | None = None
    meili_master_key: str | None = None

    def get_backend(self, postgres):
        from covr_core.search.backends import backend_from_settings

        key = self.meili_master_key
        key = key.get_value() if isinstance(key, dg.EnvVar) else key
        return backend_from_settings(Settings(meili_url=self.meili_url, meili_master_key=key), postgres.connection)


def build_search_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    key = settings.meili_master_key.get_secret_value() if settings.meili_master_key else None
    if key is not None and os.environ.get("MEILI_MASTER_KEY") == key:
        key = dg.EnvVar("MEILI_MASTER_KEY")
    return {"search": SearchResource(meili_url=settings.meili_url, meili_master_key=key)}
