"""The ledger's signing and trusted keys as a resource; secrets arrive as dg.EnvVar names, never values."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from covr_core.platform.settings import Settings


class LedgerKeysResource(dg.ConfigurableResource):
    """The Ed25519 key that signs checkpoints and the public keys verification trusts."""

    home: str = ".covr"
    signing_key: str | None = None  # PEM text (as dg.EnvVar("COVR_LEDGER_SIGNING_KEY") when from the environment)
    signing_key_file: str | None = None
    trusted_keys: list[str] = []

    def settings(self) -> Settings:
        return Settings(
            home=Path(self.home),
            ledger_signing_key=self.signing_key,
            ledger_signing_key_file=Path(self.signing_key_file) if self.signing_key_file else None,
            ledger_trusted_keys=list(self.trusted_keys),
        )


def build_ledger_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    import os

    secret = settings.ledger_signing_key
    return {
        "ledger_keys": LedgerKeysResource(
            home=str(settings.home.absolute()),
            signing_key=(dg.EnvVar("COVR_LEDGER_SIGNING_KEY") if os.environ.get("COVR_LEDGER_SIGNING_KEY")
                         else secret.get_secret_value() if secret else None),
            signing_key_file=str(settings.ledger_signing_key_file) if settings.ledger_signing_key_file else None,
            trusted_keys=list(settings.ledger_trusted_keys),
        )
    }
