"""Domain errors: each names the thing and carries a stable code; the API maps codes to problem+json."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller can act on. `code` is stable: clients switch on it."""

    code = "domain_error"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    """Absent, or not visible to the caller: the two are indistinguishable on purpose (no existence leak)."""

    code = "not_found"


class InvalidTransition(DomainError):
    """The object exists and is visible, but its state does not allow this step."""

    code = "invalid_transition"


class Conflict(DomainError):
    """The change collides with existing data (a taken handle, an open request already there)."""

    code = "conflict"


class InvalidInput(DomainError):
    """Well-formed but unacceptable data: the domain's own validation, after the schema's."""

    code = "invalid_input"


class Unauthorized(DomainError):
    """Missing, expired or revoked credentials, or a wrong password."""

    code = "unauthorized"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int, **extra):
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class IdempotencyKeyReused(DomainError):
    """The same Idempotency-Key arrived with a different request."""

    code = "idempotency_key_reused"
