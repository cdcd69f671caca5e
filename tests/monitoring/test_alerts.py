"""The alert dispatcher in process: what receivers get, retries, never slowing delivery, counts,
live settings, and the receiver hook."""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import standardwebhooks
import svix.webhooks
from prometheus_client import CollectorRegistry
from starlette.responses import Response

import pipecored
from pipecored import Alert, AlertContext, AlertReceiver
from pipecored.alerts.dispatcher import AlertDispatcher, RetryPolicy, collect_alert_receivers
from pipecored.alerts.receivers import AlertmanagerReceiver, WebhookReceiver
from pipecored.circuit import CircuitChange
from pipecored.config.model import (
    AlertmanagerConfig,
    AlertsConfig,
    AlertWebhookConfig,
    ChannelConfig,
    DaemonConfig,
    RouteConfig,
    TenantConfig,
)
from pipecored.config.registry import ConfigSnapshot, TenantEntry
from pipecored.errors import PipecoreError
from pipecored.metrics import Metrics
from pipecored.plugins import get_plugin_manager
from tests.conftest import ROOT, eventually
from tests.fakes.server import FakeServer, RecordedRequest

# Standard Webhooks' own form of a secret, and a plain string as configured before it (its key is
# its UTF-8 bytes).
SECRET = "whsec_" + base64.b64encode(b"alert-s3cr3t-key-0123456789abcdef").decode()
PLAIN_SECRET = "alert-s3cr3t-0123456789"
OPENED = 1_700_000_000.0
FAST = RetryPolicy(attempts=4, initial=0.05, maximum=0.2, timeout=2.0)


def _tenant(fallback: bool) -> TenantConfig:
    fallbacks = (RouteConfig(provider="console"),) if fallback else ()
    return TenantConfig(
        name="Acme",
        channels={
            "sms": ChannelConfig(provider="httpjson", fallbacks=fallbacks),
            "email": ChannelConfig(provider="httpjson"),
        },
    )


@dataclass
class Settings:
    """The live configuration as the dispatcher sees it; tests swap ``snapshot`` to reload."""

    snapshot: ConfigSnapshot

    @classmethod
    def of(cls, alerts: AlertsConfig, *, fallback: bool = False) -> Settings:
        tenants = {"acme": TenantEntry("acme", _tenant(fallback))}
        return cls(ConfigSnapshot(DaemonConfig(alerts=alerts), tenants, {}))

    def with_alerts(self, alerts: AlertsConfig) -> ConfigSnapshot:
        return ConfigSnapshot(DaemonConfig(alerts=alerts), self.snapshot.tenants, {})


def change(state: str, provider: str = "httpjson", channel: str = "sms", at: float = 0) -> Any:
    return CircuitChange(
        "acme",
        channel,
        provider,
        state=state,  # type: ignore[arg-type]
        reason="http_503: scripted 503" if state == "open" else "a trial call succeeded",
        at=at or OPENED,
        opened_at=OPENED,
    )


def counts(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["receiver"], s.labels["result"]): s.value
        for metric in metrics.alerts.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }


class Script:
    """A receiver endpoint answering a scripted list of statuses, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.times: list[float] = []

    def __call__(self, request: RecordedRequest) -> Response:
        self.times.append(time.monotonic())
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def endpoint() -> Iterator[tuple[FakeServer, Script]]:
    script = Script()
    with FakeServer(script) as server:
        yield server, script


@pytest.fixture
async def make_dispatcher() -> AsyncIterator[Callable[..., tuple[AlertDispatcher, Metrics]]]:
    made: list[AlertDispatcher] = []

    def make(
        settings: Settings,
        receivers: list[AlertReceiver] | None = None,
        **options: Any,
    ) -> tuple[AlertDispatcher, Metrics]:
        metrics = Metrics(CollectorRegistry())
        options.setdefault("retry", FAST)
        dispatcher = AlertDispatcher(
            receivers if receivers is not None else [AlertmanagerReceiver(), WebhookReceiver()],
            snapshot=lambda: settings.snapshot,
            metrics=metrics,
            **options,
        )
        dispatcher.start()
        made.append(dispatcher)
        return dispatcher, metrics

    yield make
    for dispatcher in made:
        await dispatcher.stop(grace=0.2)


def _iso(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def verify(request: RecordedRequest, secret: str | bytes) -> None:
    """Verify as a receiver would: with the standardwebhooks library, with Svix's, and by hand
    from the specification (base64 HMAC-SHA256 of "id.timestamp.body")."""
    standardwebhooks.Webhook(secret).verify(request.body, request.headers, json_parse=False)
    svix.webhooks.Webhook(secret).verify(request.body, request.headers)
    key = secret if isinstance(secret, bytes) else base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode()
    digest = hmac.new(key, signed + request.body, hashlib.sha256).digest()
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


async def test_webhooks_get_the_body_signed_with_standard_webhooks_when_they_have_a_secret(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    server, _ = endpoint
    alerts = AlertsConfig(
        webhooks=(
            AlertWebhookConfig(url=f"{server.url}/signed", secret=SECRET),
            AlertWebhookConfig(url=f"{server.url}/plain"),
        )
    )
    dispatcher, metrics = make_dispatcher(Settings.of(alerts))

    dispatcher.circuit_changed(change("open"))
    dispatcher.circuit_changed(change("closed", at=OPENED + 42))
    await dispatcher.flush()

    signed = [r for r in server.requests if r.path == "/signed"]
    plain = [r for r in server.requests if r.path == "/plain"]
    assert [json.loads(r.body)["status"] for r in signed] == ["firing", "resolved"]
    firing, resolved = (json.loads(r.body) for r in signed)
    assert firing == {
        "status": "firing",
        "alertname": "PipecoreProviderDown",
        "tenant": "acme",
        "channel": "sms",
        "provider": "httpjson",
        "severity": "critical",
        "reason": "http_503: scripted 503",
        "resolution": None,
        "startsAt": "2023-11-14T22:13:20.000Z",
        "endsAt": None,
    }
    assert resolved["endsAt"] == "2023-11-14T22:14:02.000Z"
    assert resolved["resolution"] == "a trial call succeeded"
    assert resolved["reason"] == "http_503: scripted 503"  # the cause of the outage, kept
    for request in signed:
        verify(request, SECRET)
        assert request.headers["content-type"] == "application/json"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert "x-pipecore-signature" not in request.headers  # the replayable body-only form
    # The firing and the resolve are two messages: a receiver that drops duplicates keeps both.
    assert signed[0].headers["webhook-id"] != signed[1].headers["webhook-id"]
    assert [r.body for r in plain] == [r.body for r in signed]
    # Unsigned, a webhook still gets the id to drop duplicates by.
    assert [r.headers["webhook-id"] for r in plain] == [r.headers["webhook-id"] for r in signed]
    assert all("webhook-signature" not in r.headers for r in plain)
    assert counts(metrics) == {("webhook", "sent"): 2.0}  # alertmanager is not configured


async def test_a_captured_alert_webhook_cannot_be_replayed_later(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    """The signature covers the id and the time: a request replayed after the receiver's
    tolerance fails, and so does one whose timestamp is brought up to date."""
    server, _ = endpoint
    alerts = AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url, secret=SECRET),))
    dispatcher, _ = make_dispatcher(Settings.of(alerts))
    dispatcher.circuit_changed(change("open"))
    await dispatcher.flush()
    [captured] = server.requests
    verify(captured, SECRET)

    stale = {**captured.headers, "webhook-timestamp": str(int(time.time()) - 600)}
    for headers in (stale, {**captured.headers, "webhook-timestamp": str(int(time.time()) + 1)}):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(SECRET).verify(captured.body, headers)
    # Nor may another alert's id ride on this signature.
    other = {**captured.headers, "webhook-id": "alert_0123456789abcdef0123456789abcdef"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(captured.body, other)


async def test_every_retry_of_an_alert_webhook_carries_the_same_id_signed_again(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    server, script = endpoint
    script.statuses = [503, 502]
    alerts = AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url, secret=SECRET),))
    dispatcher, metrics = make_dispatcher(Settings.of(alerts))
    dispatcher.circuit_changed(change("open"))
    await asyncio.wait_for(dispatcher.flush(), 5)

    assert len(server.requests) == 3
    assert len({r.headers["webhook-id"] for r in server.requests}) == 1
    assert (
        server.requests[0].headers["webhook-id"]
        == dispatcher.firing[("acme", "sms", "httpjson")].id
    )
    for request in server.requests:
        verify(request, SECRET)
    assert counts(metrics) == {("webhook", "retried"): 2.0, ("webhook", "sent"): 1.0}


async def test_a_plain_secret_is_the_key_as_its_bytes(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    """A secret without whsec_ (configured before alerts were signed this way) keeps working:
    the receiver gives its bytes to the library."""
    server, _ = endpoint
    alerts = AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url, secret=PLAIN_SECRET),))
    dispatcher, _ = make_dispatcher(Settings.of(alerts))
    dispatcher.circuit_changed(change("open"))
    await dispatcher.flush()
    [request] = server.requests
    verify(request, PLAIN_SECRET.encode())
    # What docs/monitoring.md gives as the other way to hand it to a library.
    verify(request, "whsec_" + base64.b64encode(PLAIN_SECRET.encode()).decode())


async def test_a_whsec_secret_that_is_not_base64_fails_the_alert_without_retries_or_leaks(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = endpoint
    broken = "whsec_not*base64*s3cr3t"
    alerts = AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url, secret=broken),))
    dispatcher, metrics = make_dispatcher(Settings.of(alerts))
    dispatcher.circuit_changed(change("open"))
    await dispatcher.flush()
    assert server.requests == []
    assert counts(metrics) == {("webhook", "failed"): 1.0}
    out = capsys.readouterr().out
    assert "must be base64" in out
    assert "s3cr3t" not in out


@pytest.mark.parametrize(
    ("statuses", "expected", "delays"),
    [
        pytest.param(
            [503, 502], {("webhook", "retried"): 2.0, ("webhook", "sent"): 1.0}, 2, id="recovers"
        ),
        pytest.param(
            [503] * 10, {("webhook", "retried"): 3.0, ("webhook", "failed"): 1.0}, 3, id="gives-up"
        ),
        pytest.param([400], {("webhook", "failed"): 1.0}, 0, id="refused-is-not-retried"),
        pytest.param([429], {("webhook", "retried"): 1.0, ("webhook", "sent"): 1.0}, 1, id="429"),
    ],
)
async def test_a_receiver_that_is_down_is_retried_with_backoff_and_counted(
    endpoint: tuple[FakeServer, Script],
    make_dispatcher: Any,
    statuses: list[int],
    expected: dict[tuple[str, str], float],
    delays: int,
) -> None:
    server, script = endpoint
    script.statuses = statuses
    alerts = AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url),))
    # The top of each jitter range, so that the waits are the backoff ceilings: 50, 100, 200 ms.
    dispatcher, metrics = make_dispatcher(Settings.of(alerts), rng=lambda low, high: high)

    dispatcher.circuit_changed(change("open"))
    await asyncio.wait_for(dispatcher.flush(), 5)

    assert counts(metrics) == expected
    gaps = [b - a for a, b in zip(script.times, script.times[1:], strict=False)]
    assert len(gaps) == delays
    for gap, ceiling in zip(gaps, (0.05, 0.1, 0.2), strict=False):
        assert gap >= ceiling * 0.9, gaps


async def test_an_unreachable_receiver_is_retried_then_given_up(make_dispatcher: Any) -> None:
    alerts = AlertsConfig(alertmanager=AlertmanagerConfig(url="http://127.0.0.1:9"))
    dispatcher, metrics = make_dispatcher(Settings.of(alerts))
    dispatcher.circuit_changed(change("open"))
    await asyncio.wait_for(dispatcher.flush(), 5)
    assert counts(metrics) == {("alertmanager", "retried"): 3.0, ("alertmanager", "failed"): 1.0}


class Hanging(AlertReceiver):
    """A receiver whose sends never finish (a peer that accepts and never answers)."""

    name = "hanging"

    def __init__(self) -> None:
        self.started = 0

    async def send(self, alert: Alert, ctx: AlertContext) -> None:
        self.started += 1
        await asyncio.Event().wait()


async def test_the_circuit_listener_returns_at_once_while_a_receiver_hangs(
    make_dispatcher: Any,
) -> None:
    hanging = Hanging()
    dispatcher, metrics = make_dispatcher(
        Settings.of(AlertsConfig()),
        [hanging],
        retry=RetryPolicy(attempts=2, initial=0.01, timeout=0.2),
    )
    t0 = time.perf_counter()
    for i in range(200):
        dispatcher.circuit_changed(change("open", provider=f"p{i}"))
    elapsed = time.perf_counter() - t0
    # Returning at all proves nothing waited on the receiver; the bound, that enqueueing is cheap
    # (loose enough for a loaded CI machine).
    assert elapsed < 0.5, elapsed
    await eventually(lambda: hanging.started >= 2, timeout=2)
    # Each send is bounded by the policy's timeout, and then retried.
    await eventually(lambda: counts(metrics).get(("hanging", "retried"), 0) >= 1, timeout=2)


async def test_alertmanager_gets_firing_alerts_again_until_they_resolve(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    server, _ = endpoint
    alerts = AlertsConfig(
        alertmanager=AlertmanagerConfig(url=server.url),
        webhooks=(AlertWebhookConfig(url=f"{server.url}/hook"),),
    )
    dispatcher, metrics = make_dispatcher(Settings.of(alerts), resend_interval=0.1)

    fired_at = time.time()
    dispatcher.circuit_changed(change("open"))
    posts = await eventually(
        lambda: [r for r in server.requests if r.path == "/api/v2/alerts"][2:], timeout=3
    )
    dispatcher.circuit_changed(change("closed", at=time.time()))
    await dispatcher.flush()
    await asyncio.sleep(0.3)  # a few resend intervals: nothing more may come

    am = [json.loads(r.body) for r in server.requests if r.path == "/api/v2/alerts"]
    assert len(am) >= 4 and posts
    for [alert] in am[:-1]:
        assert alert["labels"] == {
            "alertname": "PipecoreProviderDown",
            "tenant": "acme",
            "channel": "sms",
            "provider": "httpjson",
            "severity": "critical",
        }
        assert alert["startsAt"] == "2023-11-14T22:13:20.000Z"
        # Firing: four resend intervals ahead, so that it expires unless re-sent.
        assert _iso(alert["endsAt"]) >= fired_at + 4 * 0.1 - 0.01
        assert "http_503: scripted 503" in alert["annotations"]["description"]
    [resolved] = am[-1]
    assert resolved["labels"] == am[0][0]["labels"]
    assert _iso(resolved["endsAt"]) <= time.time()
    assert "a trial call succeeded" in resolved["annotations"]["description"]
    # Webhooks get one firing and one resolved, not the re-sends.
    hooks = [json.loads(r.body)["status"] for r in server.requests if r.path == "/hook"]
    assert hooks == ["firing", "resolved"]
    assert counts(metrics)[("alertmanager", "sent")] == len(am)


async def test_a_reload_of_the_alert_settings_applies_to_the_next_alert(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    server, _ = endpoint
    settings = Settings.of(AlertsConfig(webhooks=(AlertWebhookConfig(url=f"{server.url}/old"),)))
    dispatcher, _ = make_dispatcher(settings)
    dispatcher.circuit_changed(change("open"))
    await dispatcher.flush()

    settings.snapshot = settings.with_alerts(
        AlertsConfig(webhooks=(AlertWebhookConfig(url=f"{server.url}/new", secret=SECRET),))
    )
    dispatcher.circuit_changed(change("closed"))
    await dispatcher.flush()

    assert [r.path for r in server.requests] == ["/old", "/new"]
    assert "webhook-signature" not in server.requests[0].headers
    verify(server.requests[1], SECRET)


@pytest.mark.parametrize(
    ("fallback", "already_down", "severity"),
    [
        pytest.param(False, [], "critical", id="no-fallback"),
        pytest.param(True, [], "warning", id="fallback-up"),
        pytest.param(True, ["console"], "critical", id="fallback-down-too"),
    ],
)
async def test_severity_says_whether_the_channel_still_has_a_route(
    make_dispatcher: Any, fallback: bool, already_down: list[str], severity: str
) -> None:
    dispatcher, _ = make_dispatcher(Settings.of(AlertsConfig(), fallback=fallback))
    for provider in already_down:
        dispatcher.circuit_changed(change("open", provider=provider))
    dispatcher.circuit_changed(change("open"))
    assert dispatcher.firing[("acme", "sms", "httpjson")].severity == severity


async def test_an_alert_whose_route_is_gone_from_the_config_is_resolved(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    server, _ = endpoint
    settings = Settings.of(
        AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url),)), fallback=True
    )
    dispatcher, _ = make_dispatcher(settings, resend_interval=0.05)
    dispatcher.circuit_changed(change("open", provider="console"))
    dispatcher.circuit_changed(change("open", channel="email"))
    settings.snapshot = ConfigSnapshot(
        settings.snapshot.daemon,
        {"acme": TenantEntry("acme", _tenant(fallback=False))},  # console is no fallback now
        {},
    )
    await eventually(lambda: ("acme", "sms", "console") not in dispatcher.firing, timeout=2)
    await dispatcher.flush()
    bodies = [json.loads(r.body) for r in server.requests]
    assert [(b["provider"], b["status"], b["resolution"]) for b in bodies[2:]] == [
        ("console", "resolved", "no longer configured")
    ]
    assert ("acme", "email", "httpjson") in dispatcher.firing  # still configured: still firing


async def test_stopping_resolves_what_is_firing(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    server, _ = endpoint
    dispatcher, _ = make_dispatcher(
        Settings.of(AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url),)))
    )
    dispatcher.circuit_changed(change("open"))
    await dispatcher.stop()
    bodies = [json.loads(r.body) for r in server.requests]
    assert [(b["status"], b["resolution"]) for b in bodies] == [
        ("firing", None),
        ("resolved", "pipecored stopped"),
    ]


async def test_a_close_without_an_alert_sends_nothing(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    server, _ = endpoint
    dispatcher, metrics = make_dispatcher(
        Settings.of(AlertsConfig(webhooks=(AlertWebhookConfig(url=server.url),)))
    )
    dispatcher.circuit_changed(change("closed"))
    await dispatcher.flush()
    assert server.requests == []
    assert counts(metrics) == {}


# -- the register_alert_receivers hook ---------------------------------------------------------


class Pager(AlertReceiver):
    name = "pager"

    async def send(self, alert: Alert, ctx: AlertContext) -> None:
        raise AssertionError("never called")


def test_the_builtin_receivers_come_through_the_entry_point_group() -> None:
    pm = get_plugin_manager()
    names = [r.name for r in collect_alert_receivers(pm)]
    assert names == ["alertmanager", "webhook"]
    [(plugin, dist)] = [
        (p, d)
        for p, d in pm.list_plugin_distinfo()
        if getattr(p, "__name__", "") == "pipecored.alerts.receivers"
    ]
    assert dist.project_name == "pipecored"
    assert plugin is not None


def test_the_builtin_receivers_use_only_the_public_api() -> None:
    """Like a third party's receiver (and the built-in providers): ``from pipecored import``
    public names, nothing from the host."""
    path = ROOT / "pipecored" / "alerts" / "receivers.py"
    imported = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import reaches into the host"
            imported.append(node.module or "")
            if node.module == "pipecored":
                for alias in node.names:
                    assert alias.name in pipecored.__all__, f"{alias.name} is not public"
    assert [m for m in imported if m.split(".")[0] == "pipecored"] == ["pipecored"]


def test_a_plugin_registers_a_receiver_of_its_own() -> None:
    class Plugin:
        @staticmethod
        @pipecored.hookimpl
        def register_alert_receivers(register: Callable[[AlertReceiver], None]) -> None:
            register(Pager())

    pm = get_plugin_manager()
    pm.register(Plugin(), name="pager")
    assert [r.name for r in collect_alert_receivers(pm)] == ["alertmanager", "pager", "webhook"]


@pytest.mark.parametrize(
    ("registered", "message"),
    [
        pytest.param(
            WebhookReceiver(),
            re.escape(
                "'webhook' is registered by both (registered in process) and pipecored 0.1.0"
            ),
            id="name-taken",
        ),
        pytest.param(
            object(),
            r"\(registered in process\) registered <object object at .*>, which is not a named "
            r"pipecored.AlertReceiver",
            id="not-a-receiver",
        ),
    ],
)
def test_bad_registrations_are_refused(registered: object, message: str) -> None:
    class Plugin:
        @staticmethod
        @pipecored.hookimpl
        def register_alert_receivers(register: Callable[[object], None]) -> None:
            register(registered)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="bad")
    with pytest.raises(PipecoreError, match=message):
        collect_alert_receivers(pm)


# -- plugin settings: plugins.<receiver name> in pipecored.yaml ----------------------------------


class SettingsReader(AlertReceiver):
    """A third-party-style receiver configured only by its own ``plugins.reader`` entry."""

    name = "reader"

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def enabled(self, ctx: AlertContext) -> bool:
        return "channel" in ctx.settings

    async def send(self, alert: Alert, ctx: AlertContext) -> None:
        self.seen.append((alert.status, dict(ctx.settings)))


async def test_a_receiver_reads_its_own_plugin_settings_live(make_dispatcher: Any) -> None:
    reader = SettingsReader()
    settings = Settings.of(AlertsConfig())
    dispatcher, metrics = make_dispatcher(settings, [reader])
    dispatcher.circuit_changed(change("open", provider="p1"))
    await asyncio.wait_for(dispatcher.flush(), 5)
    assert reader.seen == []  # no plugins.reader entry: nowhere to send
    assert counts(metrics) == {}

    def with_plugins(plugins: dict[str, dict[str, Any]]) -> ConfigSnapshot:
        daemon = DaemonConfig(plugins=plugins)
        return ConfigSnapshot(daemon, settings.snapshot.tenants, {})

    settings.snapshot = with_plugins({"reader": {"channel": "#ops", "mention": "@aña 🚨"}})
    dispatcher.circuit_changed(change("open", provider="p2"))
    await asyncio.wait_for(dispatcher.flush(), 5)
    settings.snapshot = with_plugins({"reader": {"channel": "#noc"}, "other": {"x": 1}})
    dispatcher.circuit_changed(change("closed", provider="p2"))
    await asyncio.wait_for(dispatcher.flush(), 5)

    assert reader.seen == [
        ("firing", {"channel": "#ops", "mention": "@aña 🚨"}),
        ("resolved", {"channel": "#noc"}),
    ]
    assert counts(metrics) == {("reader", "sent"): 2.0}


async def test_a_receiver_cannot_change_the_live_settings(make_dispatcher: Any) -> None:
    class Meddler(AlertReceiver):
        name = "meddler"
        saw: Any = None
        refused = False

        async def send(self, alert: Alert, ctx: AlertContext) -> None:
            Meddler.saw = ctx.settings["url"]
            try:
                ctx.settings["url"] = "http://elsewhere"  # type: ignore[index]
            except TypeError:
                Meddler.refused = True

    settings = Settings.of(AlertsConfig())
    settings.snapshot = ConfigSnapshot(
        DaemonConfig(plugins={"meddler": {"url": "http://pager"}}), settings.snapshot.tenants, {}
    )
    dispatcher, metrics = make_dispatcher(settings, [Meddler()])
    dispatcher.circuit_changed(change("open"))
    await asyncio.wait_for(dispatcher.flush(), 5)
    assert (Meddler.saw, Meddler.refused) == ("http://pager", True)
    assert counts(metrics) == {("meddler", "sent"): 1.0}
    assert settings.snapshot.daemon.plugins == {"meddler": {"url": "http://pager"}}


async def test_a_receiver_whose_enabled_raises_fails_that_alert_and_keeps_its_queue(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any
) -> None:
    class Broken(AlertReceiver):
        name = "broken"
        calls = 0

        def enabled(self, ctx: AlertContext) -> bool:
            Broken.calls += 1
            if Broken.calls == 1:
                raise KeyError("url")
            return True

        async def send(self, alert: Alert, ctx: AlertContext) -> None:
            pass

    dispatcher, metrics = make_dispatcher(
        Settings.of(AlertsConfig()), [Broken()], retry=RetryPolicy(attempts=1)
    )
    dispatcher.circuit_changed(change("open"))
    dispatcher.circuit_changed(change("closed"))
    await asyncio.wait_for(dispatcher.flush(), 5)
    assert counts(metrics) == {("broken", "failed"): 1.0, ("broken", "sent"): 1.0}


async def test_nodes_sharing_a_store_notify_a_webhook_once_and_alertmanager_from_each(
    endpoint: tuple[FakeServer, Script], make_dispatcher: Any, tmp_path: Any
) -> None:
    """Two daemons on one store (a cluster) both see the provider fail: the webhook receiver
    gets one firing and one resolution, through the store's claim_once; Alertmanager, which
    deduplicates by labels itself, hears from both."""
    from pipecored.store.sqlite import SQLiteStore

    server, _ = endpoint
    store = SQLiteStore(str(tmp_path / "shared.db"))  # its claims are what the nodes share
    await store.open()
    try:
        alerts = AlertsConfig(
            alertmanager=AlertmanagerConfig(url=f"{server.url}/am"),
            webhooks=(AlertWebhookConfig(url=f"{server.url}/hook"),),
        )

        nodes = [make_dispatcher(Settings.of(alerts), claim=store.claim_once) for _ in range(2)]
        for dispatcher, _ in nodes:
            dispatcher.circuit_changed(change("open"))
        for dispatcher, _ in nodes:
            dispatcher.circuit_changed(change("closed", at=OPENED + 42))
        for dispatcher, _ in nodes:
            await dispatcher.flush()

        hooks = [json.loads(r.body)["status"] for r in server.requests if r.path == "/hook"]
        assert hooks == ["firing", "resolved"]
        assert len([r for r in server.requests if r.path.startswith("/am")]) == 4
        deduplicated = sum(counts(m).get(("webhook", "deduplicated"), 0) for _, m in nodes)
        assert deduplicated == 2
    finally:
        await store.close()
