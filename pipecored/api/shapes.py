"""The API's response shapes, written once.

Each is a ``TypedDict``: the serializers (:mod:`pipecored.api.serializers`) build them, mypy
checks that they build them whole, and the OpenAPI document's schemas are generated from the
same classes (:func:`response_schemas`), so the document cannot drift from the responses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import TypeAdapter, WithJsonSchema
from typing_extensions import TypedDict

from pipecored.store.base import AttemptOutcomeName, Direction, MessageStatus

Timestamp = Annotated[
    str | None, WithJsonSchema({"type": ["string", "null"], "format": "date-time"})
]
# the tenant's channels are the plugins' to declare: the document fills in their names
ChannelName = Annotated[str, WithJsonSchema({"type": "string", "x-pipecored": "channel"})]


class Accepted(TypedDict):
    id: str
    status: Literal["queued"]
    tenantId: str
    channel: ChannelName


class Attempt(TypedDict):
    provider: str
    startedAt: Timestamp
    outcome: AttemptOutcomeName
    httpStatus: int | None
    errorCode: str | None
    errorMessage: str | None
    durationMs: float


class InboundMedia(TypedDict):
    kind: str
    mimeType: NotRequired[str]
    providerMediaId: NotRequired[str]
    url: NotRequired[str]
    caption: NotRequired[str]
    filename: NotRequired[str]


# "from" is a keyword, hence the functional form
LogItem = TypedDict(
    "LogItem",
    {
        "id": str,
        "tenantId": str,
        "channel": ChannelName,
        "direction": Direction,
        "provider": str | None,
        "to": str | list[str] | None,
        "from": str | None,
        "status": MessageStatus,
        "attemptCount": int,
        "providerMessageId": str | None,
        "errorCode": str | None,
        "errorMessage": str | None,
        "createdAt": Timestamp,
        "updatedAt": Timestamp,
        # inbound messages: their text, cut in list views (bodyTruncated)
        "body": NotRequired[str | None],
        "bodyTruncated": NotRequired[bool],
        "media": NotRequired[list[InboundMedia]],  # inbound: the files the customer sent
        # a message of a provider experiment: the experiment and the arm it was assigned to
        "experiment": NotRequired[str],
        "experimentArm": NotRequired[str],
    },
)


class Message(LogItem):
    sentAt: Timestamp
    nextAttemptAt: Timestamp
    attempts: list[Attempt]


class RateLimit(TypedDict):
    perSecond: float
    burst: int


class Route(TypedDict):
    provider: str
    credentials: Annotated[
        dict[str, str],
        WithJsonSchema(
            {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Secret credentials are masked (****abcd)",
            }
        ),
    ]
    baseUrl: NotRequired[str]


class ExperimentArmConfig(Route):
    name: str
    weight: float


class ExperimentConfig(TypedDict):
    name: str
    arms: list[ExperimentArmConfig]


class Channel(Route):
    """With an experiment, provider and credentials are its leading arm's."""

    isActive: bool
    fallbacks: list[Route]
    rateLimit: NotRequired[RateLimit]
    experiment: NotRequired[ExperimentConfig]


class ConfigError(TypedDict):
    message: str
    issues: list[str]


class QuietHours(TypedDict):
    timezone: str
    start: str
    end: str
    channels: list[str]


class TenantWebhook(TypedDict):
    url: str  # without its query, as in the events API
    secret: str  # masked
    events: list[str] | None  # None: every event


class OptOut(TypedDict):
    stop: list[str]
    start: list[str]


class TenantConfig(TypedDict):
    tenantId: str
    name: str | None
    channels: dict[str, Channel]
    # logical template -> language -> provider (or "text") -> that provider's template
    templates: NotRequired[dict[str, dict[str, dict[str, Any]]]]
    quietHours: NotRequired[QuietHours]
    webhooks: NotRequired[list[TenantWebhook]]
    optOut: NotRequired[OptOut]  # the keywords in force (the tenant's lists or the defaults)
    configError: NotRequired[ConfigError]


class Latency(TypedDict):
    p50: float | None
    p95: float | None
    p99: float | None


class Stats(TypedDict):
    tenantId: str
    total: int
    byStatus: dict[str, int]
    byChannel: dict[str, int]
    byProvider: dict[str, int]
    deliveryRate: float | None
    latencyMs: Latency


class ErrorDetail(TypedDict):
    code: Annotated[str, WithJsonSchema({"type": "string", "pattern": "^[a-z0-9_]+$"})]
    message: str
    field: NotRequired[str]


class Error(TypedDict):
    error: ErrorDetail


class EventDelivery(TypedDict):
    endpoint: str  # the URL without its query (where a platform may keep a token)
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    nextAttemptAt: Timestamp
    lastStatusCode: int | None
    lastError: str | None
    updatedAt: Timestamp


class Event(TypedDict):
    """An event as its endpoints receive it (``type``, ``timestamp``, ``data``), with its id
    (the ``webhook-id`` header) and each endpoint's delivery."""

    id: str
    type: str
    timestamp: str
    data: dict[str, Any]
    deliveries: list[EventDelivery]


class EventPage(TypedDict):
    items: list[Event]
    # where to continue from (the last item's cursor, or the one given): poll with it for newer
    nextCursor: str | None
    hasMore: bool


class LatencyP50P95(TypedDict):
    p50: float | None
    p95: float | None


class ExperimentArm(TypedDict):
    name: str
    weight: float | None  # null: no longer configured
    provider: str | None
    messages: int
    sent: int
    delivered: int  # delivered or read
    failed: int
    deliveryRate: float | None  # delivered / (sent + delivered + failed)
    latencyMs: LatencyP50P95


class Experiment(TypedDict):
    channel: ChannelName
    name: str
    active: bool  # the channel's current experiment
    arms: list[ExperimentArm]
    pValue: float | None  # two-proportion test on delivery rate (each arm against the first)
    significant: bool  # pValue < 0.05


class Experiments(TypedDict):
    tenantId: str
    experiments: list[Experiment]


class Suppression(TypedDict):
    channel: ChannelName
    address: str
    reason: str | None
    createdAt: Timestamp


class SuppressionPage(TypedDict):
    items: list[Suppression]
    nextCursor: str | None


class Suppressed(TypedDict):
    tenantId: str
    channel: ChannelName
    address: str  # as the list keeps it (an email address in lower case)
    created: bool  # False: it was already on the list (its first reason and date are kept)


RESPONSES: tuple[type, ...] = (Accepted, Attempt, InboundMedia, LogItem, Message, Route, Channel)
RESPONSES += (QuietHours, TenantWebhook, OptOut, TenantConfig, Stats, Error)
RESPONSES += (EventDelivery, Event, EventPage, Suppression, SuppressionPage, Suppressed)
RESPONSES += (ExperimentArmConfig, ExperimentConfig, LatencyP50P95, ExperimentArm, Experiment)
RESPONSES += (Experiments,)


def response_schemas(ref_template: str, channels: list[str]) -> dict[str, Any]:
    """The JSON Schemas of every response shape, by name, with nested shapes as references
    (``ref_template``) and channel fields listing ``channels``."""
    schemas: dict[str, Any] = {}
    for shape in RESPONSES:
        schema = TypeAdapter(shape).json_schema(ref_template=ref_template, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[shape.__name__] = schema
    for schema in schemas.values():
        _fill_channels(schema, channels)
        schema.pop("title", None)
    return schemas


def _fill_channels(node: Any, channels: list[str]) -> None:
    if isinstance(node, dict):
        if node.pop("x-pipecored", None) == "channel":
            node["enum"] = channels
        for key, value in list(node.items()):
            if key == "title" and isinstance(value, str):
                del node[key]
            else:
                _fill_channels(value, channels)
    elif isinstance(node, list):
        for item in node:
            _fill_channels(item, channels)
