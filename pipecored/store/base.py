"""What the rest of pipecored needs from a message store.

The store holds the queue, the log of every message and attempt, inbound messages and
idempotency keys. The API and delivery code use only this interface, so a PostgreSQL
implementation can follow without touching them.

Times are UNIX seconds (float, UTC). Statuses move forward only (see :data:`STATUS_RANK`).
"""

from __future__ import annotations

import abc
import secrets
import time
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

from pipecored.errors import PipecoreError
from pipecored.provider import InboundMessage, StatusEvent

MessageStatus = Literal[
    "scheduled",
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "failed",
    "canceled",
    "received",
]
AttemptOutcomeName = Literal["success", "retryable_error", "permanent_error", "timeout"]
Direction = Literal["outbound", "inbound"]

# The one list of each, for the API's filters and its document.
MESSAGE_STATUSES: tuple[str, ...] = get_args(MessageStatus)
ATTEMPT_OUTCOMES: tuple[str, ...] = get_args(AttemptOutcomeName)
DIRECTIONS: tuple[str, ...] = get_args(Direction)

# A status event or attempt result is applied only when it moves a message forward.
# "failed" may follow anything but "read" and "failed" itself (an email bounce or complaint
# arrives after "delivered"); "received" is for inbound messages and never changes.
STATUS_RANK: Mapping[str, int] = {
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
}
# Where a message's status never moves on from.
FINAL_STATUSES = frozenset({"failed", "canceled", "received"})


def moves_forward(current: str, new: str) -> bool:
    if current in FINAL_STATUSES:
        return False
    if new == "failed":
        return current != "read"
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(current, 99)


def new_message_id() -> str:
    """``msg_`` + 12 hex digits of milliseconds + 16 random hex digits: unique, and sorted by
    creation time, which keeps index inserts at the end of the b-tree."""
    return f"msg_{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim written with the accept: the message is stored ``sending``, leased to the worker
    of the daemon that accepted it, which takes the record in memory instead of claiming it
    (``DeliveryWorker.lease``). Once ``until`` has passed, any worker may claim it, as after
    any other lease."""

    token: str
    until: float


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: str
    tenant_id: str
    channel: str
    to: str | list[str]  # as the client gave it
    sender: str | None
    payload: Mapping[str, Any]  # the OutboundMessage fields as JSON
    created_at: float
    not_before: float | None = None  # not to be sent before (a sendAt, the end of quiet hours)
    scheduled: bool = False  # status 'scheduled' (a sendAt) rather than 'queued'
    experiment: str | None = None  # the channel's experiment when it was accepted
    experiment_arm: str | None = None  # the arm it was assigned to (SPEC section 10)
    lease: Lease | None = None  # stored already claimed (only a message due now)
    # its recipients' suppression keys: refused if any is on the tenant's list for the channel
    suppression_keys: tuple[str, ...] = ()

    @property
    def status(self) -> MessageStatus:
        if self.lease is not None:
            return "sending"
        return "scheduled" if self.scheduled else "queued"

    def record(self, seq: int) -> MessageRecord:
        """The record of this message as a store's accept writes it, built from what was
        written (reading the row back would parse the payload again)."""
        return MessageRecord(
            id=self.id,
            seq=seq,
            tenant_id=self.tenant_id,
            channel=self.channel,
            direction="outbound",
            provider=None,
            to=self.to if isinstance(self.to, str) else list(self.to),
            sender=self.sender,
            status=self.status,
            attempt_count=0,
            provider_message_id=None,
            error_code=None,
            error_message=None,
            created_at=self.created_at,
            updated_at=self.created_at,
            sent_at=None,
            not_before=self.not_before,
            route_index=0,
            route_attempts=0,
            lease_token=self.lease.token if self.lease is not None else None,
            payload=self.payload,
            experiment=self.experiment,
            experiment_arm=self.experiment_arm,
        )


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    key: str
    request_hash: str  # sha256 of the canonical request (channel + body)
    expires_at: float


class RecipientsSuppressed(PipecoreError):
    """An accept refused, nothing stored: ``keys`` (those of the message's
    ``suppression_keys`` on the tenant's suppression list for the channel, in its order)."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__("recipients on the suppression list: " + ", ".join(keys))
        self.keys = keys


def refused_accepts(
    messages: Iterable[NewMessage], suppressed: Container[tuple[str, str, str]]
) -> dict[str, RecipientsSuppressed]:
    """The accepts among ``messages`` that name a recipient on their tenant's suppression list
    for the channel (``(tenant_id, channel, key)`` in ``suppressed``, what a store's lookup
    found), by message id, each with its refusal: the keys in the message's order."""
    refused: dict[str, RecipientsSuppressed] = {}
    for message in messages:
        keys = [
            key
            for key in dict.fromkeys(message.suppression_keys)
            if (message.tenant_id, message.channel, key) in suppressed
        ]
        if keys:
            refused[message.id] = RecipientsSuppressed(keys)
    return refused


class IdempotencyConflict(PipecoreError):
    """The key was used before by this tenant with a different request."""

    def __init__(self, message_id: str) -> None:
        super().__init__("idempotency key reused with a different request")
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    provider: str
    started_at: float
    outcome: AttemptOutcomeName
    http_status: int | None
    error_code: str | None
    error_message: str | None
    duration_ms: float


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    seq: int  # insertion order; cursors are built on it
    tenant_id: str
    channel: str
    direction: Direction
    provider: str | None  # the provider that carried it (or is carrying it)
    to: str | list[str]
    sender: str | None
    status: MessageStatus
    attempt_count: int
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    sent_at: float | None  # when the provider accepted it
    not_before: float | None  # queued: not to be tried before this time
    route_index: int  # 0: the channel's provider; n: its n-th fallback
    route_attempts: int  # attempts made on the current route entry
    lease_token: str | None
    payload: Mapping[str, Any]
    body_preview: str | None = None  # inbound text
    attempts: tuple[AttemptRecord, ...] = ()
    experiment: str | None = None
    experiment_arm: str | None = None


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which of a tenant's messages a log page holds: all of them, or those matching every
    field given; ``before_seq`` continues a previous page."""

    before_seq: int | None = None
    channel: str | None = None
    status: str | None = None
    direction: str | None = None


EVERY_MESSAGE = LogFilter()


@dataclass(frozen=True, slots=True)
class AcceptResult:
    record: MessageRecord
    replayed: bool  # an idempotency key matched an earlier request: nothing new was stored


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """The result of one delivery attempt, written in one transaction with the attempt row.

    Applied only if the message still carries ``lease_token`` (its lease was not taken over).
    When a webhook has already moved the message further, its status wins over ``status``.
    ``status`` is where the message goes: ``sent``/``delivered`` (done), ``queued`` (retry at
    ``not_before``) or ``failed``.
    """

    message_id: str
    lease_token: str
    attempt: AttemptRecord | None  # None when no call was made (expired, unroutable)
    status: Literal["queued", "sent", "delivered", "failed"]
    provider: str | None
    route_index: int
    route_attempts: int
    provider_message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    not_before: float | None = None
    sent_at: float | None = None
    # the moves to another route this outcome makes, in order (a ``message.failover`` event each)
    failovers: tuple[Failover, ...] = ()


@dataclass(frozen=True, slots=True)
class Failover:
    """A message moved from one provider of its channel to another (circuit open, or its
    route's attempts spent)."""

    from_provider: str
    to_provider: str
    reason: str


@dataclass(frozen=True, slots=True)
class Completed:
    """What :meth:`MessageStore.complete` did besides recording the attempt."""

    # the statuses that status callbacks received before the provider's answer (so held until
    # the answer named the message) moved the message on to, in order
    deferred: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AppliedStatus:
    message_id: str
    moved: bool  # False for a repeated or late event: the message already was there or further
    experiment: str | None = None  # the message's experiment and arm, if it has one
    experiment_arm: str | None = None


@dataclass(frozen=True, slots=True)
class ArmResult:
    """One experiment arm's outbound messages and where they stand (SPEC section 10)."""

    channel: str
    experiment: str
    arm: str
    messages: int
    sent: int  # at sent, no receipt yet
    delivered: int  # delivered or read
    failed: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    total: int
    by_status: Mapping[str, int]
    by_channel: Mapping[str, int]
    by_provider: Mapping[str, int]
    delivery_rate: float | None  # (delivered + read) / (sent + delivered + read + failed)
    latency_ms: Mapping[str, float | None] = field(default_factory=dict)  # p50, p95, p99


@dataclass(frozen=True, slots=True)
class SuppressionRecord:
    """An address a tenant must not send to on a channel (SPEC section 9)."""

    seq: int  # the list's cursor
    tenant_id: str
    channel: str
    address: str
    reason: str | None
    created_at: float


EventState = Literal["pending", "delivered", "failed"]
EVENT_STATES: tuple[str, ...] = get_args(EventState)


def new_event_id() -> str:
    """``evt_`` + 12 hex digits of milliseconds + 16 random hex digits (as message ids)."""
    return f"evt_{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event for a tenant's platform (SPEC section 8), as it is stored: ``body`` is the
    exact JSON posted on every attempt; ``endpoints`` the tenant's endpoint URLs subscribed to
    its type when it is stored (each gets its own delivery and schedule). With none, the event
    is still kept, for ``GET /messaging/events``."""

    id: str
    tenant_id: str
    type: str
    body: bytes
    created_at: float
    endpoints: tuple[str, ...] = ()


class EventSource(Protocol):
    """What a store asks, inside the transaction of a change, for the event that change emits:
    the body is built from the record as the change left it."""

    def message_event(
        self,
        event_type: str,
        record: MessageRecord,
        *,
        now: float,
        extra: Mapping[str, Any] | None = None,
    ) -> NewEvent | None: ...

    def tenant_event(
        self, tenant_id: str, event_type: str, data: Mapping[str, Any], *, now: float
    ) -> NewEvent | None: ...


@dataclass(frozen=True, slots=True)
class EventDelivery:
    """One event to post to one endpoint, as the outbox worker claims it."""

    event_id: str
    tenant_id: str
    endpoint: str
    type: str
    body: bytes
    attempts: int  # attempts made before this one
    created_at: float


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one attempt at posting an event to an endpoint ended. ``retry_at`` None with
    ``delivered`` False: given up (the schedule is spent, or the endpoint is gone)."""

    event_id: str
    endpoint: str
    delivered: bool
    status_code: int | None
    error: str | None
    retry_at: float | None
    finished_at: float


@dataclass(frozen=True, slots=True)
class EndpointDelivery:
    endpoint: str
    state: EventState
    attempts: int
    next_attempt_at: float | None  # pending: when it is (or was) due
    last_status_code: int | None
    last_error: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int  # the events API's cursor
    id: str
    tenant_id: str
    type: str
    body: bytes
    created_at: float
    deliveries: tuple[EndpointDelivery, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """One endpoint's deliveries, for metrics and the console."""

    tenant_id: str
    endpoint: str
    pending: int
    failed: int  # given up
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: float | None


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """A tenant's outbound messages accepted in ``[start, start + bucket_seconds)`` and where
    they stand now (the console's charts): counted as :meth:`MessageStore.stats` counts them.

    Latency is from acceptance to the provider's acceptance, over the bucket's messages that
    reached a provider. Computed from every such message while the bucket holds up to
    :data:`ACTIVITY_EXACT_LATENCY` messages; above that from a sample spread evenly over the
    bucket's time (``latency_sampled``), so that a chart's cost does not grow with the traffic.
    """

    start: float
    accepted: int
    sent: int  # still at sent (no delivery receipt yet)
    delivered: int  # delivered or read
    failed: int
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_sampled: bool = False

    @property
    def delivery_rate(self) -> float | None:
        """As in stats: (delivered + read) / (sent + delivered + read + failed)."""
        settled = self.sent + self.delivered + self.failed
        return self.delivered / settled if settled else None


# Activity buckets are whole hours (the stores keep hourly counts), at most a month of them.
ACTIVITY_HOUR = 3600
MAX_ACTIVITY_BUCKETS = 744
# A bucket with at most this many messages has its latency percentiles from all of them.
ACTIVITY_EXACT_LATENCY = 512


def activity_starts(*, since: float, until: float, bucket_seconds: int) -> list[float]:
    """The buckets :meth:`MessageStore.activity` answers: aligned to multiples of
    ``bucket_seconds`` since the epoch (UTC), from the one holding ``since`` to the one holding
    ``until``. ValueError for a bucket that is not whole hours, or too many buckets."""
    if bucket_seconds <= 0 or bucket_seconds % ACTIVITY_HOUR:
        raise ValueError("bucket_seconds must be a positive multiple of 3600")
    first = int(since // bucket_seconds)
    last = int(until // bucket_seconds)
    if last < first:
        return []
    if last - first + 1 > MAX_ACTIVITY_BUCKETS:
        raise ValueError(f"at most {MAX_ACTIVITY_BUCKETS} buckets")
    return [float(b * bucket_seconds) for b in range(first, last + 1)]


class MessageStore(abc.ABC):
    # How many messages :meth:`open` put back in the queue because the previous process of this
    # daemon had claimed them and died (kill -9): sent again at once, not after their lease.
    taken_back: int = 0
    # Builds the events that changes emit, stored in the change's transaction; None: no events
    # (a store used without a gateway, as in most store tests).
    events: EventSource | None = None
    # Whether several daemons may share this store (PostgreSQL): alert notifications are then
    # deduplicated through it (claim_once). Rate limits always go through reserve_rate.
    shared: bool = False

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema and take back what a dead previous owner had claimed;
        afterwards every method may be called."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release the database."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreError when the store cannot serve: cannot be read, or, after a write failed
        (a full disk), still cannot be written."""

    @abc.abstractmethod
    async def accept(
        self, message: NewMessage, idempotency: IdempotencyClaim | None = None
    ) -> AcceptResult:
        """Store a new outbound message as ``queued``, durably, before returning; with a
        ``message.lease``, as ``sending`` under that lease, as if claimed in the same
        transaction (a replayed request's message is returned as it is).

        Refused with :class:`RecipientsSuppressed`, nothing stored, when any of
        ``message.suppression_keys`` is on the tenant's suppression list for the channel:
        checked in the accept's own write (with the other accepts of a group commit), not by a
        read before it, and before the idempotency key.

        With an idempotency claim, the key check and the insert are one transaction: an
        unexpired key with the same request hash returns the first message (``replayed``);
        with a different hash it raises IdempotencyConflict.
        """

    @abc.abstractmethod
    async def get(self, message_id: str) -> MessageRecord | None:
        """One message with its attempts, oldest first."""

    @abc.abstractmethod
    async def claim(
        self,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        exclude: Collection[tuple[str, str]] = (),
    ) -> list[MessageRecord]:
        """Take up to ``limit`` due messages: queued or scheduled with ``not_before <= now`` (or
        none), or ``sending`` whose lease expired. Each gets status ``sending``, a fresh
        ``lease_token`` and a lease until ``now + lease_seconds``. Oldest first. Messages of
        the (tenant, channel) pairs in ``exclude`` (throttled by their rate limit) are left in
        the queue."""

    @abc.abstractmethod
    async def complete(self, outcome: AttemptOutcome) -> Completed | None:
        """Record an attempt and move the message, then apply the status callbacks that were
        waiting for its provider message id; None when the lease was lost. Emits
        ``message.failover`` for each of ``outcome.failovers`` and an event for each status the
        message reached (``message.sent``, ``.delivered``, ``.read``, ``.failed``)."""

    @abc.abstractmethod
    async def release(self, message_id: str, lease_token: str) -> None:
        """Give a claimed message back to the queue untouched (shutdown)."""

    @abc.abstractmethod
    async def next_due(self, exclude: Collection[tuple[str, str]] = ()) -> float | None:
        """The earliest time at which claim() could return something, or None if nothing waits;
        messages of the (tenant, channel) pairs in ``exclude`` are not looked at, as in claim()."""

    @abc.abstractmethod
    async def apply_status(
        self, tenant_id: str, provider: str, event: StatusEvent
    ) -> AppliedStatus | None:
        """Apply a provider's status event to the message it names (by ``message_id`` or by
        ``provider_message_id``), only forward. Returns the message and whether its status
        moved, or None when no message of this tenant matches yet (the event is then kept and
        applied when the provider id is recorded, since callbacks can overtake our own write of
        the provider's answer). A move emits the status's event."""

    @abc.abstractmethod
    async def add_inbound(
        self,
        tenant_id: str,
        channel: str,
        provider: str,
        message: InboundMessage,
        *,
        opt_out: Literal["stop", "start"] | None = None,
    ) -> tuple[str, bool]:
        """Log an inbound message as ``received``; returns (id, created). A provider's retry of
        the same message (same provider id) is not stored twice. With ``opt_out``, a new
        message also suppresses its sender on this channel (``stop``) or lifts that
        (``start``), in the same transaction. Emits ``message.received`` (and
        ``recipient.suppressed``/``recipient.unsuppressed`` when the list changed)."""

    @abc.abstractmethod
    async def cancel(self, message_id: str, *, now: float) -> MessageRecord | None:
        """Cancel a ``scheduled`` or ``queued`` message (never claimed again); None when it is
        in any other status (or unknown). Emits ``message.canceled``."""

    @abc.abstractmethod
    async def requeue(self, message_id: str, *, now: float) -> MessageRecord | None:
        """Put a failed message back in the queue on its first route entry."""

    @abc.abstractmethod
    async def list_messages(
        self, tenant_id: str, *, limit: int, where: LogFilter = EVERY_MESSAGE
    ) -> list[MessageRecord]:
        """Newest first, without attempts, at most ``limit``."""

    @abc.abstractmethod
    async def stats(self, tenant_id: str, *, since: float | None = None) -> StoreStats:
        """Counts of outbound messages and accept-to-provider latency percentiles."""

    @abc.abstractmethod
    async def queue_depth(self, *, now: float) -> tuple[int, float]:
        """(messages queued or sending, age in seconds of the oldest of them or 0)."""

    @abc.abstractmethod
    async def purge_idempotency(self, *, now: float) -> int:
        """Forget expired idempotency keys; returns how many."""

    @abc.abstractmethod
    async def suppress(
        self, tenant_id: str, channel: str, address: str, *, reason: str | None, now: float
    ) -> bool:
        """Suppress an address; False when it already was (its first reason is kept). Emits
        ``recipient.suppressed`` when it was not."""

    @abc.abstractmethod
    async def unsuppress(self, tenant_id: str, channel: str, address: str) -> bool:
        """Lift a suppression; False when there was none. Emits ``recipient.unsuppressed``
        when there was one."""

    @abc.abstractmethod
    async def list_suppressions(
        self, tenant_id: str, *, channel: str | None, after_seq: int | None, limit: int
    ) -> list[SuppressionRecord]:
        """The tenant's suppressions, oldest first, after a cursor, optionally of one channel."""

    # -- the events outbox (SPEC section 8) ----------------------------------------------------

    @abc.abstractmethod
    async def add_event(self, event: NewEvent) -> None:
        """Store an event that no stored change causes (a provider's circuit opening), with a
        pending delivery per endpoint, due at once."""

    @abc.abstractmethod
    async def claim_event_deliveries(
        self,
        *,
        now: float,
        limit: int,
        lease_seconds: float,
        per_endpoint: int,
        exclude_endpoints: Collection[str] = (),
    ) -> list[EventDelivery]:
        """Take up to ``limit`` pending deliveries due at ``now``, the earliest due first, at
        most ``per_endpoint`` of any one endpoint, none of the endpoints in
        ``exclude_endpoints`` (busy at their concurrency). Each is due again at
        ``now + lease_seconds`` unless finished before: a worker that dies mid-post leaves it
        to be posted again (at least once)."""

    @abc.abstractmethod
    async def finish_event_delivery(self, result: DeliveryResult) -> None:
        """Record an attempt: delivered, pending again at ``retry_at``, or failed for good."""

    @abc.abstractmethod
    async def next_event_due(self, exclude_endpoints: Collection[str] = ()) -> float | None:
        """When the earliest pending delivery (of an endpoint not excluded) is due, or None."""

    @abc.abstractmethod
    async def list_events(
        self, tenant_id: str, *, after_seq: int | None, limit: int
    ) -> list[EventRecord]:
        """The tenant's events oldest first, after a cursor, each with its deliveries."""

    @abc.abstractmethod
    async def outbox_depth(self, *, now: float) -> tuple[int, float]:
        """(deliveries pending, age in seconds of the oldest pending delivery's event or 0)."""

    @abc.abstractmethod
    async def endpoint_health(
        self, tenant_id: str, endpoints: Sequence[str]
    ) -> list[EndpointHealth]:
        """For each of the tenant's ``endpoints``: deliveries pending and given up, and how its
        last attempt ended (none yet: None)."""

    # -- coordination between the daemons sharing a store (SPEC section 12) --------------------

    def on_work(self, listener: Callable[[], None]) -> None:
        """Have ``listener`` called when a daemon sharing this store made work (an accept, a
        retry, an event to post, a dead node's messages put back), so that idle workers start
        at once. A store one daemon owns never calls it: that daemon wakes its own workers."""

    @abc.abstractmethod
    async def reserve_rate(self, key: str, *, per_second: float, burst: int, now: float) -> float:
        """Reserve the next send under the rate limit ``key`` (a tenant's channel), for every
        daemon on this store; returns how long this send waits (0: now). The semantics are
        :func:`pipecored.ratelimit.gcra_reserve`'s on one number per key; a change of
        ``per_second`` or ``burst`` applies from the next reservation."""

    @abc.abstractmethod
    async def claim_once(self, key: str, *, until: float, now: float) -> bool:
        """True for the first caller of ``key`` until ``until``; False for everyone else (on
        any daemon sharing the store) until then. After ``until`` the key may be claimed
        again."""

    # -- the console's charts ----------------------------------------------------------------

    @abc.abstractmethod
    async def activity(
        self, tenant_id: str, *, since: float, until: float, bucket_seconds: int
    ) -> list[ActivityBucket]:
        """The tenant's outbound messages per bucket (see :func:`activity_starts`), oldest
        first, every bucket present (empty ones with zeros). Read from indexes only: its cost
        depends on the number of buckets, not on the number of messages."""

    # -- provider experiments (SPEC section 10) --------------------------------------------------

    @abc.abstractmethod
    async def experiment_results(self, tenant_id: str) -> list[ArmResult]:
        """Per channel, experiment and arm of the tenant's outbound messages: counts by where
        they stand, and latency p50/p95 from acceptance to the provider's acceptance."""
