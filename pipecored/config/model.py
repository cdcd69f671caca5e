"""The shape of ``pipecored.yaml`` and ``tenants/<id>.yaml``, as frozen pydantic models.

Keys are camelCase in files and in the HTTP API; attributes are snake_case here.
Durations are strings with a unit (``200ms``, ``1s``, ``5m``, ``24h``) or plain seconds.
"""

from __future__ import annotations

import hashlib
import math
import re
import zoneinfo
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from pipecored.channels import CHANNEL_NAME_PATTERN
from pipecored.events.kinds import EVENT_TYPES, unknown_event_types
from pipecored.signing import webhook_signing_key

# Which channels exist is the plugins' to declare (pipecored.channels); a file names one by a
# name of this shape, and the loader checks it is declared.
ChannelName = Annotated[str, Field(pattern=CHANNEL_NAME_PATTERN)]

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}\Z")  # \Z: "$" also matches before a "\n"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    # An infinite or NaN duration (YAML's .inf) would pass ge=0 and then break every timer and
    # int() that uses it, so only finite numbers are durations.
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("expected a duration such as 200ms, 1s, 5m or 24h")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+", value):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        coerce_numbers_to_str=True,
    )


class ServerConfig(Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: HttpUrl | None = None
    shutdown_grace: Duration = 10.0
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


_HASHED_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")


def _api_key(value: str) -> str:
    if value.startswith("sha256:") and not _HASHED_KEY.match(value):
        raise ValueError("a hashed key is sha256: followed by 64 lower-case hex digits")
    return value


# An empty key (an unset ${VAR:-}) can never be presented, so it is a mistake, not a key.
# A key is written as itself (or ${ENV}), or as "sha256:<hex>" of it so that the file does not
# hold the key (`pipecored keys new` prints both).
ApiKey = Annotated[str, Field(min_length=1), AfterValidator(_api_key)]


def api_key_digest(configured: str) -> bytes:
    """The SHA-256 of a configured key, whether it was written plainly or as its hash."""
    if _HASHED_KEY.match(configured):
        return bytes.fromhex(configured.removeprefix("sha256:"))
    return hashlib.sha256(configured.encode("utf-8")).digest()


class RateLimitConfig(Model):
    per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class AuthConfig(Model):
    admin_keys: tuple[ApiKey, ...] = ()
    # Wrong keys from one client address: this many at once, then this rate; past it the
    # address is answered 429 before its key is looked at.
    failed_key_limit: RateLimitConfig = RateLimitConfig(per_second=0.5, burst=20)


class ProviderDefaults(Model):
    base_url: HttpUrl | None = None
    api_version: str | None = None

    def settings(self) -> dict[str, str]:
        return {"apiVersion": self.api_version} if self.api_version else {}


class BackoffConfig(Model):
    initial: Duration = 1.0
    max: Duration = 300.0


class CircuitConfig(Model):
    failure_threshold: int = Field(default=5, ge=1)
    cooldown: Duration = 30.0


class DeliveryConfig(Model):
    max_attempts: int = Field(default=6, ge=1)
    retry_backoff: BackoffConfig = BackoffConfig()
    max_age: Duration = 86400.0
    timeout: Duration = 15.0
    circuit: CircuitConfig = CircuitConfig()
    concurrency: int = Field(default=256, ge=1, le=10000)
    lease: Duration = 120.0


class AlertmanagerConfig(Model):
    url: HttpUrl


class AlertWebhookConfig(Model):
    url: HttpUrl
    secret: str | None = None


class AlertsConfig(Model):
    alertmanager: AlertmanagerConfig | None = None
    webhooks: tuple[AlertWebhookConfig, ...] = ()


class LoggingConfig(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


def _store_url(value: str) -> str:
    if value.startswith(("postgresql://", "postgres://")):
        return value  # libpq's URI; the driver names what is wrong with it when it connects
    if not value.startswith("sqlite:///"):
        raise ValueError(
            "expected sqlite:///relative/path.db, sqlite:////absolute/path.db or"
            " postgresql://user@host:port/database"
        )
    path = value.removeprefix("sqlite:///")
    # A relative path stays inside the config dir; an absolute one (sqlite:////...) is explicit.
    if not path.startswith("/") and ".." in PurePosixPath(path).parts:
        raise ValueError("a relative store path may not leave the config dir (no ..)")
    return value


class ConfigWatchConfig(Model):
    """How the config dir is watched. Network file systems (NFS, SMB, some container volumes)
    send no change events: there, poll instead (read at start; a change needs a restart)."""

    force_polling: bool = False
    poll_interval: Duration = Field(default=1.0, gt=0)


class StorePoolConfig(Model):
    """Connections a daemon keeps to PostgreSQL (not used with SQLite)."""

    min_size: int = Field(default=2, ge=1, le=100)
    max_size: int = Field(default=10, ge=1, le=500)


def _store_retention(value: float | None, info: ValidationInfo) -> float | None:
    if value is None:
        return None
    store = info.data.get("store", "")
    if not str(store).startswith(("postgresql://", "postgres://")):
        raise ValueError("applied by the PostgreSQL store only: SQLite keeps every message")
    if value < 3600:
        raise ValueError("expected at least 1h (e.g. 90d)")
    return value


class DaemonConfig(Model):
    server: ServerConfig = ServerConfig()
    store: Annotated[str, AfterValidator(_store_url)] = "sqlite:///pipecored.db"
    store_pool: StorePoolConfig = StorePoolConfig()
    # How long finished messages and events are kept (e.g. 90d); unset: forever
    store_retention: Annotated[Duration | None, AfterValidator(_store_retention)] = None
    auth: AuthConfig = AuthConfig()
    providers: dict[str, ProviderDefaults] = {}
    delivery: DeliveryConfig = DeliveryConfig()
    alerts: AlertsConfig = AlertsConfig()
    logging: LoggingConfig = LoggingConfig()
    config_watch: ConfigWatchConfig = ConfigWatchConfig()
    # Each plugin's own settings, by the name it registers under (a provider's or an alert
    # receiver's ``name``); the plugin validates them itself.
    plugins: dict[str, dict[str, Any]] = {}


# Keys whose change needs a restart: the listening socket and the database.
RESTART_KEYS = (
    "server.host",
    "server.port",
    "store",
    "store_pool",
    "store_retention",
    "config_watch",
)


class RouteConfig(Model):
    """One provider a channel can use: the channel's own, or one of its fallbacks."""

    provider: str = Field(min_length=1)
    credentials: dict[str, str] = {}
    base_url: HttpUrl | None = None


class KeyPathError(ValueError):
    """A mistake at a key below the value being validated: ``path`` (dotted, relative to it) is
    added to the location ``pipecored check`` and the config API report."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


ArmName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
ExperimentName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]


class ExperimentArmConfig(RouteConfig):
    """One arm of a provider experiment: a provider with its credentials, and its share of the
    channel's new messages (weights are relative; 0 stops the arm)."""

    name: ArmName
    weight: float = Field(ge=0, le=1_000_000)


def _experiment_arms(value: tuple[ExperimentArmConfig, ...]) -> tuple[ExperimentArmConfig, ...]:
    names: set[str] = set()
    providers: dict[str, str] = {}
    for index, arm in enumerate(value):
        if arm.name in names:
            raise KeyPathError(f"{index}.name", f"arm {arm.name!r} is listed twice")
        names.add(arm.name)
        if arm.provider in providers:
            # a provider's callbacks are verified with one route's credentials and its circuit
            # is one per channel: a second arm of it would be checked with the first's secrets
            raise KeyPathError(
                f"{index}.provider",
                f"provider {arm.provider!r} is in arm {providers[arm.provider]!r} already "
                "(an experiment compares providers: one arm each)",
            )
        providers[arm.provider] = arm.name
    if not any(arm.weight > 0 for arm in value):
        raise ValueError("at least one arm needs a weight above 0")
    return value


class ExperimentConfig(Model):
    """A weighted split of a channel's messages between providers (SPEC section 10)."""

    name: ExperimentName
    arms: Annotated[
        tuple[ExperimentArmConfig, ...], Field(min_length=1), AfterValidator(_experiment_arms)
    ]

    def arm(self, name: str | None) -> ExperimentArmConfig | None:
        return next((arm for arm in self.arms if arm.name == name), None)

    @property
    def leading_arm(self) -> ExperimentArmConfig:
        """The arm with the most weight (the first of equals): the channel's provider as the
        rest of the configuration sees it."""
        return max(self.arms, key=lambda arm: arm.weight)


class ChannelConfig(RouteConfig):
    is_active: bool = True
    # Local development only: accept provider callbacks without checking their signatures.
    # Logged as a warning at every start and reload.
    verify_webhook_signatures: bool = True
    fallbacks: tuple[RouteConfig, ...] = ()
    rate_limit: RateLimitConfig | None = None
    # instead of provider and credentials: a weighted split between providers
    experiment: ExperimentConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _provider_from_the_experiment(cls, data: Any) -> Any:
        """With an experiment, the channel's provider, credentials and base URL are its leading
        arm's (what webhooks default to and the config view shows); they are not written."""
        if not isinstance(data, dict) or data.get("experiment") is None:
            return data
        for key in ("provider", "credentials", "baseUrl", "base_url"):
            if key in data:
                raise KeyPathError(key, "an experiment's arms name the providers; leave it out")
        experiment = data["experiment"]
        if isinstance(experiment, ExperimentConfig):
            experiment = experiment.model_dump(by_alias=True, exclude_none=True)
        arms = experiment.get("arms") if isinstance(experiment, dict) else None
        usable = [
            a.model_dump(by_alias=True, exclude_none=True) if isinstance(a, RouteConfig) else a
            for a in (arms if isinstance(arms, list | tuple) else ())
            if isinstance(a, dict | RouteConfig)
        ]
        if not usable:
            # the experiment's own validation names what is wrong, and the channel is invalid
            # with it: a stand-in provider keeps "provider: Field required" out of the report
            return {**data, "provider": "-"}

        def weight(arm: dict[str, Any]) -> float:
            try:
                return float(arm.get("weight", 0))
            except (TypeError, ValueError):
                return 0.0

        leading = max(usable, key=weight)
        filled = {**data, "provider": leading.get("provider", "")}
        for key in ("credentials", "baseUrl", "base_url"):
            if key in leading:
                filled[key] = leading[key]
        return filled

    @property
    def routes(self) -> tuple[RouteConfig, ...]:
        """Every route the channel has: its provider (or each arm of its experiment), then its
        fallbacks. Webhooks, circuits and checks look routes up here; a message is tried along
        :meth:`routes_for` its arm."""
        if self.experiment is not None:
            return (*self.experiment.arms, *self.fallbacks)
        return (self, *self.fallbacks)

    def routes_for(self, arm: str | None) -> tuple[RouteConfig, ...]:
        """The routes a message takes, in order: its experiment arm's provider (the leading
        arm's when it has none, or its arm was removed since), then the fallbacks."""
        if self.experiment is None:
            return (self, *self.fallbacks)
        chosen = self.experiment.arm(arm) or self.experiment.leading_arm
        return (chosen, *self.fallbacks)

    @property
    def route_providers(self) -> tuple[str, ...]:
        return tuple(route.provider for route in self.routes)

    def route_for(self, provider: str) -> RouteConfig | None:
        """The first route through ``provider`` (webhooks name the provider that calls)."""
        return next((route for route in self.routes if route.provider == provider), None)

    def serves_through(self, provider: str) -> bool:
        return self.route_for(provider) is not None

    def labelled_routes(self) -> tuple[tuple[str, RouteConfig], ...]:
        """Each route with its key path below the channel (``""`` or
        ``.experiment.arms.0``, then ``.fallbacks.0``, ...)."""
        own: tuple[tuple[str, RouteConfig], ...] = (
            tuple((f".experiment.arms.{i}", arm) for i, arm in enumerate(self.experiment.arms))
            if self.experiment is not None
            else (("", self),)
        )
        return (*own, *((f".fallbacks.{i}", f) for i, f in enumerate(self.fallbacks)))


_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")


def _clock_time(value: str) -> str:
    if not _CLOCK_TIME.match(value):
        raise ValueError("expected a time of day as HH:MM (00:00 to 23:59)")
    return value


def _time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Madrid)") from None
    return value


class QuietHoursConfig(Model):
    """Messages accepted inside the window wait for its end (unless the send says urgent)."""

    timezone: Annotated[str, AfterValidator(_time_zone)]
    start: Annotated[str, AfterValidator(_clock_time)]
    end: Annotated[str, AfterValidator(_clock_time)]
    channels: tuple[ChannelName, ...] = ()  # empty: every channel


def _template_language(value: dict[str, Any]) -> dict[str, Any]:
    for key, mapping in value.items():
        if key == "text":
            if not isinstance(mapping, str) or not mapping:
                raise KeyPathError("text", "expected the template's text")
        elif not isinstance(mapping, dict):
            raise KeyPathError(key, "expected the provider's template as a mapping")
    if not value:
        raise ValueError("expected at least one provider's template or a text")
    return value


TemplateName = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
Language = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")]
TemplateLanguage = Annotated[dict[str, Any], AfterValidator(_template_language)]


def _webhook_secret(value: str) -> str:
    # The one parser of a Standard Webhooks secret (whsec_<base64>, or any other text used as
    # its bytes); its error never holds the secret.
    webhook_signing_key(value)
    return value


def _event_types(value: tuple[str, ...]) -> tuple[str, ...]:
    unknown = unknown_event_types(value)
    if unknown:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"unknown event type {unknown[0]!r} (known: {known})")
    return value


class TenantWebhookConfig(Model):
    """One endpoint of the tenant's platform that receives its events (SPEC section 8)."""

    url: HttpUrl
    secret: Annotated[str, Field(min_length=1), AfterValidator(_webhook_secret)]
    # None: every event type
    events: Annotated[tuple[str, ...], AfterValidator(_event_types)] | None = None

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


def _distinct_urls(value: tuple[TenantWebhookConfig, ...]) -> tuple[TenantWebhookConfig, ...]:
    seen: set[str] = set()
    for index, hook in enumerate(value):
        if hook.url in seen:
            raise KeyPathError(f"{index}.url", f"{hook.url} is listed twice")
        seen.add(hook.url)
    return value


class OptOutConfig(Model):
    """The tenant's own opt-out keywords (SPEC section 9); a missing list keeps the default."""

    stop: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] | None = None
    start: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] | None = None


class TenantConfig(Model):
    name: str = Field(min_length=1)
    api_keys: tuple[ApiKey, ...] = ()
    channels: dict[ChannelName, ChannelConfig] = {}
    rate_limit: RateLimitConfig | None = None  # API requests made with this tenant's keys
    # logical template -> language -> provider name (or "text") -> that provider's template
    templates: dict[TemplateName, dict[Language, TemplateLanguage]] = {}
    quiet_hours: QuietHoursConfig | None = None
    webhooks: Annotated[tuple[TenantWebhookConfig, ...], AfterValidator(_distinct_urls)] = ()
    opt_out: OptOutConfig = OptOutConfig()
