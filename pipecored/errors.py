"""Every error pipecored raises on purpose, in one small hierarchy.

::

    PipecoreError
    ├── ConfigError              invalid values, each with its file, key path and message
    ├── ApiError                 answered to an HTTP client; carries ``status`` and ``code``
    │   ├── BadRequest           400 unreadable JSON
    │   ├── Unauthorized         401 no key, or an unknown one
    │   ├── Forbidden            403 a key acting outside its tenant
    │   ├── NotFound             404 unknown tenant, channel, message or route
    │   ├── Conflict             409 idempotency conflicts, inactive channels
    │   ├── PayloadTooLarge      413 body over the limit
    │   ├── UnsupportedMediaType 415 body is not JSON
    │   ├── ValidationFailed     422 a field is missing or invalid; the message names it
    │   ├── RateLimited          429 with Retry-After
    │   └── ServiceUnavailable   503 store down, shutting down
    ├── ProviderError            a provider call failed: provider, retryable, the provider's
    │   │                        own code and message, HTTP status, Retry-After
    │   └── ProviderTimeout      the call did not finish in time (retryable)
    ├── MessageRejected          a provider refuses a message at accept time (422, names the field)
    ├── WebhookError             a provider callback that cannot be applied
    │   ├── WebhookSignatureError  403: the signature does not verify; nothing is applied
    │   └── WebhookPayloadError    400: signed, but not a shape the provider sends
    ├── StoreError               the message store cannot take or give data now (503)
    └── AlertSendError           an alert receiver could not deliver; ``retryable`` says whether
                                 to try again

Provider and webhook errors are public: plugins raise them
(``from pipecored import ProviderError``).
Messages never contain secrets: callers build them from codes, field names and provider text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class PipecoreError(Exception):
    """Base of every error pipecored raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one file, at one key path (``channels.email.credentials.apiKey``)."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(root)'}: {self.message}"


class ConfigError(PipecoreError):
    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ApiError(PipecoreError):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400
    code = "invalid_json"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class RecipientSuppressed(ValidationFailed):
    """A send to an address on the tenant's suppression list (SPEC section 9): 422 naming
    every suppressed address of the send in ``addresses``."""

    code = "recipient_suppressed"

    def __init__(self, addresses: list[str], *, field: str = "to") -> None:
        named = ", ".join(addresses)
        super().__init__(
            f"{field}: {named} opted out or bounced: on this tenant's suppression list for the"
            " channel (remove it there to send again)",
            field=field,
        )
        self.details = {"addresses": addresses}


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after)))})
        self.retry_after = retry_after


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})


class ProviderError(PipecoreError):
    """A provider call that failed.

    ``retryable``: the same call may succeed later (rate limits, outages, timeouts).
    ``unavailable``: the provider cannot serve this tenant now whatever the message (revoked
    credentials, suspended account); delivery moves to a fallback at once instead of retrying.
    ``retry_after``: seconds the provider asked us to wait, when it said.
    """

    outcome = "error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        provider: str | None = None,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        unavailable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.provider = provider
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after
        self.unavailable = unavailable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"code={self.code!r}, retryable={self.retryable}, http_status={self.http_status})"
        )


class ProviderTimeout(ProviderError):
    def __init__(
        self, message: str = "provider call timed out", *, provider: str | None = None
    ) -> None:
        super().__init__(message, retryable=True, provider=provider, code="timeout")


class MessageRejected(PipecoreError):
    """Raised by ``Provider.check_message``: the client gets 422 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class WebhookError(PipecoreError):
    status = 400
    result = "invalid"


class WebhookSignatureError(WebhookError):
    status = 403
    result = "bad_signature"


class WebhookPayloadError(WebhookError):
    status = 400
    result = "invalid"


class StoreError(PipecoreError):
    """The store could not complete an operation (disk full, locked, closed)."""


class AlertSendError(PipecoreError):
    """A receiver could not deliver an alert. ``retryable=False`` stops the retries at once."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class ConfigChanged(Conflict):
    """409: a tenant's file changed on disk between the config API's read and its write (an
    operator's edit); nothing was written, and the request may be sent again."""

    code = "config_changed"


class TenantConfigInvalid(Conflict):
    """409: the tenant's file has a problem the request does not touch (a schema error
    elsewhere in the file, a key another principal holds); it must be fixed by hand."""

    code = "tenant_config_invalid"
