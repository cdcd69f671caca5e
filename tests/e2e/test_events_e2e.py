"""Events and opt-outs through a real daemon and the seed's tenants (SPEC sections 8 and 9).

The tenants' platform is a receiving server on loopback that verifies every post with the
``standardwebhooks`` package. A message's sent and delivered, an inbound "REPROGRAMAR" and a
Twilio -> Meta failover arrive as events. The endpoint answering 500, then hanging while the
daemon is killed with kill -9, then refusing connections while the daemon starts again, then
back: every event arrives, one webhook-id per event, duplicates only of the posts the kill cut.
Inbound STOP/START, a SendGrid bounce and the suppressions API change who may be sent to;
forged, stale and oversized provider callbacks change nothing and emit no event. The endpoint's
secret is in no event, nor in the events API, the metrics or the daemons' logs."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import Daemon, wait_until
from tests.e2e.test_seed_scenario import (
    ENV,
    KEYS,
    ROE,
    ROE_SMS_NUMBER,
    ROE_TWILIO_SID,
    SENDS,
    TABLEFLOW,
    TF_TWILIO_SID,
    TF_WHATSAPP_NUMBER,
    World,
    delivery_callbacks,
    running_world,
    webhook_url,
)
from tests.fakes import sendgrid as sendgrid_fake
from tests.fakes import twilio as twilio_fake
from tests.fakes.sendgrid import EventWebhookSigner
from tests.fakes.server import RecordedRequest

SECRET = "whsec_" + base64.b64encode(b"tableflow-platform-signing-key-0001").decode()
CUSTOMER = "+34600111222"


class Platform:
    """The tenants' platform on a loopback port of its own, which it keeps while it is down (a
    socket bound but not listening: connections are refused) and serves again when it comes
    back. Each post is answered from ``answers`` first (a status code, or "hold": wait until
    ``release`` is set, then 204, as a platform that took the event in but answered too late),
    then with ``otherwise``; every post is kept with the answer it was given."""

    def __init__(self) -> None:
        self.answers: list[int | str] = []
        self.otherwise: int | str = 204
        self.release = threading.Event()
        self.requests: list[RecordedRequest] = []
        self.given: list[tuple[RecordedRequest, int]] = []
        self._socket = self._bind(0)
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    async def _endpoint(self, request: Request) -> Response:
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=[],
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            url=str(request.url),
        )
        self.requests.append(recorded)
        answer = self.answers.pop(0) if self.answers else self.otherwise
        if answer == "hold":
            await asyncio.to_thread(self.release.wait, 120)
            answer = 204
        self.given.append((recorded, int(answer)))
        return Response(status_code=int(answer))

    def up(self) -> None:
        """Serve on the port (the bound socket starts listening)."""
        assert self._server is None
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        wait_until(lambda: self._server is not None and self._server.started)

    def down(self) -> None:
        """Stop serving, answering any held post first; the port stays this platform's, so that
        connections to it are refused until :meth:`up`."""
        self.release.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = self._thread = None
        self._socket = self._bind(self.port)

    def held(self) -> int:
        return len(self.requests) - len(self.given)

    def events(self) -> list[dict[str, Any]]:
        """Every post, verified as a receiver does it, with its webhook-id."""
        hook = Webhook(SECRET)
        verified = []
        for request in list(self.requests):
            payload = hook.verify(request.body, request.headers)
            verified.append({"webhook-id": request.headers["webhook-id"], **payload})
        return verified

    def taken_in(self) -> list[dict[str, Any]]:
        """The posts the platform answered 2xx: what a receiver acted on."""
        hook = Webhook(SECRET)
        return [
            {"webhook-id": r.headers["webhook-id"], **hook.verify(r.body, r.headers)}
            for r, status in list(self.given)
            if 200 <= status < 300
        ]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["type"] == event_type]


@pytest.fixture
def platform() -> Iterator[Platform]:
    platform = Platform()
    platform.up()
    try:
        yield platform
    finally:
        platform.down()
        platform._socket.close()


def _subscribe(world: World, tenant: str, url: str) -> None:
    path = world.config.path / "tenants" / f"{tenant}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["webhooks"] = [{"url": url + "/hooks/pipecore", "secret": SECRET}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with world.client(KEYS[tenant]) as client:
        wait_until(lambda: "webhooks" in client.get(f"/messaging/config/{tenant}").json())


def _events_api(world: World, tenant: str) -> list[dict[str, Any]]:
    with world.client(KEYS[tenant]) as client:
        response = client.get(f"/messaging/events/{tenant}", params={"limit": 500})
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    return list(response.json()["items"])


# The endpoint's secret as written, its key, and the key's bytes: none may leave the daemon.
SECRET_FORMS = (SECRET, SECRET.removeprefix("whsec_"), base64.b64decode(SECRET[6:]).decode())


def _secret_not_in_metrics(world: World) -> None:
    metrics = httpx.get(f"{world.daemon.url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "pipecore_event_deliveries_total" in metrics.text
    for form in SECRET_FORMS:
        assert form not in metrics.text


def _secret_not_in_logs(root: Path) -> None:
    """Every daemon's log (read once the daemons have stopped and flushed them)."""
    logs = sorted(root.glob("daemon-*.log"))
    assert logs
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        for form in SECRET_FORMS:
            assert form not in text, path.name


def _twilio_inbound(world: World, tenant: str, channel: str, text: str) -> None:
    to, sid, token = (
        (TF_WHATSAPP_NUMBER, TF_TWILIO_SID, ENV["TABLEFLOW_TWILIO_TOKEN"])
        if tenant == TABLEFLOW
        else (ROE_SMS_NUMBER, ROE_TWILIO_SID, ENV["ROE_TWILIO_TOKEN"])
    )
    params = twilio_fake.inbound_params(
        body=text, from_=CUSTOMER, to=to, account_sid=sid, channel=channel
    )
    form = twilio_fake.sign_form(webhook_url(tenant, channel, "twilio"), token, params)
    response = world.call_back(form.url, form.headers, form.body)
    assert response.status_code == 200, response.text


def test_progress_replies_and_failovers_reach_the_platform_signed(
    tmp_path: Path, platform: Platform
) -> None:
    with running_world(tmp_path) as world:
        _subscribe(world, TABLEFLOW, platform.url)
        case = SENDS["tableflow-whatsapp-twilio"]
        message_id = world.send(case)
        sent = world.settled(TABLEFLOW, message_id)
        for callback in delivery_callbacks(world, case, sent):
            assert world.call_back(callback.url, callback.headers, callback.body).status_code == 200

        reply = "REPROGRAMAR, ¿puede ser el jueves? 🙏 Begoña"
        _twilio_inbound(world, TABLEFLOW, "whatsapp", reply)

        world.twilio.fail_next(status=401, code=20003)  # TableFlow's Twilio credentials revoked
        moved_id = world.send(case)
        moved = world.settled(TABLEFLOW, moved_id)
        assert moved["provider"] == "meta", moved

        wait_until(lambda: len(platform.of_type("message.failover")) == 1)
        wait_until(lambda: len(platform.of_type("message.received")) == 1)
        wait_until(lambda: len(platform.of_type("message.delivered")) == 1)
        # posts are not ordered (an endpoint has up to four in flight): compare as sets
        progress = sorted(e["type"] for e in platform.events() if e["data"].get("id") == message_id)
        assert progress == ["message.delivered", "message.sent"]
        [received] = platform.of_type("message.received")
        assert received["data"]["body"] == reply  # UTF-8 byte for byte
        assert (received["data"]["from"], received["data"]["direction"]) == (CUSTOMER, "inbound")
        [failover] = platform.of_type("message.failover")
        assert failover["data"]["id"] == moved_id
        assert (failover["data"]["failover"]["from"], failover["data"]["failover"]["to"]) == (
            "twilio",
            "meta",
        )
        wait_until(
            lambda: (
                sorted(e["type"] for e in platform.events() if e["data"].get("id") == moved_id)
                == ["message.failover", "message.sent"]
            )
        )
        ids = [e["webhook-id"] for e in platform.events()]
        assert len(ids) == len(set(ids))  # nothing was retried: one post per event
        # no secret of the tenant's in any event
        everything = b"".join(r.body for r in platform.requests)
        for name, value in ENV.items():
            if name.startswith("TABLEFLOW_") and name != "TABLEFLOW_API_KEY":
                assert value.encode() not in everything, name
        _events_api(world, TABLEFLOW)  # checks the endpoint's secret is not in it
        _secret_not_in_metrics(world)
    _secret_not_in_logs(tmp_path)


def _sent_events(world: World, ids: set[str]) -> list[dict[str, Any]]:
    """The message.sent events of these messages, as the events API shows them."""
    items = _events_api(world, TABLEFLOW)
    return [e for e in items if e["type"] == "message.sent" and e["data"]["id"] in ids]


def test_an_endpoint_down_a_kill_9_and_a_restart_lose_no_event(
    tmp_path: Path, platform: Platform
) -> None:
    """The endpoint answers 500, then hangs while the daemon is killed with kill -9, then
    refuses connections while the daemon starts again and takes a new message, then comes back:
    every event arrives, each under one webhook-id; the only duplicates are the posts the kill
    cut (the platform took them in, the daemon never heard so)."""
    with running_world(tmp_path) as world:
        _subscribe(world, TABLEFLOW, platform.url)
        case = SENDS["tableflow-whatsapp-twilio"]

        # down: three events' first posts answered 500; everything after that is held
        platform.answers = [500, 500, 500]
        platform.otherwise = "hold"
        first = {world.send(case) for _ in range(3)}

        def failed_once() -> bool:
            deliveries = [e["deliveries"][0] for e in _sent_events(world, first)]
            return len(deliveries) == 3 and all(
                (d["state"], d["attempts"], d["lastStatusCode"]) == ("pending", 1, 500)
                for d in deliveries
            )

        wait_until(failed_once)  # the events API shows them waiting for their retry
        # their retries (after the schedule's 5 s) and a fourth event's first post hang
        fourth = world.send(case)
        wait_until(lambda: platform.held() == 4)  # an endpoint has at most 4 posts in flight

        # the daemon killed mid-post; the platform goes down with it (connections refused)
        world.daemon.kill()
        platform.down()
        platform.otherwise = 204
        world.daemon = Daemon(
            world.daemon.config, world.daemon.port, world.daemon.env, tmp_path / "daemon-1.log"
        )
        world.start()
        # the daemon goes on; the new event's post is refused, the cut ones wait for their lease
        after = world.send(case)

        def refused() -> bool:
            deliveries = [e["deliveries"][0] for e in _sent_events(world, {after})]
            return [(d["attempts"], d["lastStatusCode"]) for d in deliveries] == [(1, None)]

        wait_until(refused)
        [cut] = _sent_events(world, {fourth})
        assert (cut["deliveries"][0]["state"], cut["deliveries"][0]["attempts"]) == ("pending", 0)
        assert "could not post" in _sent_events(world, {after})[0]["deliveries"][0]["lastError"]

        # the platform back: the refused event comes back after the schedule's 5 s, the cut
        # ones after their claim's 30 s lease
        platform.up()
        expected = {*first, fourth, after}

        def every_event_delivered() -> bool:
            events = _sent_events(world, expected)
            states = {d["state"] for e in events for d in e["deliveries"]}
            return len(events) == len(expected) and states == {"delivered"}

        wait_until(every_event_delivered, timeout=120, interval=1.0)
        taken = [e for e in platform.taken_in() if e["type"] == "message.sent"]
        assert {e["data"]["id"] for e in taken} == expected  # 0 lost
        posts: dict[str, set[str]] = {}
        for event in platform.events():
            posts.setdefault(event["data"]["id"], set()).add(event["webhook-id"])
        # one webhook-id per event, the same on every retry, and no two events share one
        assert all(len(ids) == 1 for ids in posts.values()), posts
        assert len({next(iter(ids)) for ids in posts.values()}) == len(expected)
        # duplicates: only the four posts the kill cut, taken in twice under their own id
        counts = Counter(e["webhook-id"] for e in taken)
        duplicated = {webhook_id: n for webhook_id, n in counts.items() if n > 1}
        cut_ids = {next(iter(posts[m])) for m in [*first, fourth]}
        assert duplicated == dict.fromkeys(cut_ids, 2), duplicated
        finished = {e["data"]["id"]: e["deliveries"][0] for e in _sent_events(world, expected)}
        assert all(finished[m]["attempts"] >= 2 for m in [*first, after]), finished
        _secret_not_in_metrics(world)
    _secret_not_in_logs(tmp_path)


def _send_status(world: World, tenant: str, channel: str, body: dict[str, Any]) -> httpx.Response:
    with world.client(KEYS[tenant]) as client:
        return client.post(f"/messaging/send/{channel}", json=body)


def test_stop_start_a_bounce_and_the_api_decide_who_may_be_sent_to(tmp_path: Path) -> None:
    sms = {"to": CUSTOMER, "body": "Tu pedido sale hoy 🚚"}
    with running_world(tmp_path) as world:
        assert _send_status(world, ROE, "sms", sms).status_code == 202

        _twilio_inbound(world, ROE, "sms", "Stop")
        refused = _send_status(world, ROE, "sms", sms)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["addresses"]) == ("recipient_suppressed", [CUSTOMER])

        _twilio_inbound(world, ROE, "sms", "START")
        assert _send_status(world, ROE, "sms", sms).status_code == 202

        # a SendGrid hard bounce suppresses the address on ROE's email channel
        email = {
            "to": "Cliente.Perdido@Example.com",
            "subject": "Tu pedido",
            "htmlContent": "<p>¡Gracias!</p>",
        }
        accepted = _send_status(world, ROE, "email", email)
        assert accepted.status_code == 202, accepted.text
        message = world.settled(ROE, accepted.json()["id"])
        headers, body = world.signer.webhook(
            [
                sendgrid_fake.event(
                    "bounce",
                    message["providerMessageId"],
                    email=email["to"],
                    pipecore_message_id=message["id"],
                )
            ]
        )
        url = webhook_url(ROE, "email", "sendgrid")
        assert world.call_back(url, headers, body).status_code == 200
        bounced = _send_status(world, ROE, "email", email)
        assert bounced.status_code == 422, bounced.text
        assert bounced.json()["error"]["addresses"] == [email["to"]]

        with world.client(KEYS[ROE]) as client:
            listed = client.get(f"/messaging/suppressions/{ROE}").json()["items"]
            assert [(i["channel"], i["address"]) for i in listed] == [
                ("email", "cliente.perdido@example.com")
            ]
            assert "bounce reported by sendgrid" in listed[0]["reason"]
            lifted = client.delete(
                f"/messaging/suppressions/{ROE}/email/cliente.perdido@example.com"
            )
            assert lifted.status_code == 204, lifted.text
            assert _send_status(world, ROE, "email", email).status_code == 202
            added = client.post(
                f"/messaging/suppressions/{ROE}",
                json={"channel": "sms", "address": CUSTOMER, "reason": "pidió no recibir más"},
            )
            assert added.status_code == 201, added.text
            assert _send_status(world, ROE, "sms", sms).status_code == 422

        types = [e["type"] for e in _events_api(world, ROE)]
        assert types.count("recipient.suppressed") == 3
        assert types.count("recipient.unsuppressed") == 2


def test_forged_stale_and_oversized_callbacks_emit_no_event(
    tmp_path: Path, platform: Platform
) -> None:
    with running_world(tmp_path) as world:
        _subscribe(world, TABLEFLOW, platform.url)
        case = SENDS["tableflow-whatsapp-twilio"]
        message = world.settled(TABLEFLOW, world.send(case))
        wait_until(lambda: len(platform.of_type("message.sent")) == 1)
        before = _events_api(world, TABLEFLOW)

        [forged] = delivery_callbacks(world, case, message, forged=True)
        assert world.call_back(forged.url, forged.headers, forged.body).status_code == 403
        # a well-signed callback from another account: not this tenant's either
        other = EventWebhookSigner()
        headers, body = other.webhook([sendgrid_fake.event("bounce", "X1", email="a@b.example")])
        stale_or_foreign = world.call_back(webhook_url(ROE, "email", "sendgrid"), headers, body)
        assert stale_or_foreign.status_code == 403
        # SendGrid's own signature, but replayed past its freshness window
        old = datetime.now(UTC) - timedelta(hours=1)
        headers, body = world.signer.webhook(
            [sendgrid_fake.event("bounce", "X2", email="a@b.example")], timestamp=old
        )
        stale = world.call_back(webhook_url(ROE, "email", "sendgrid"), headers, body)
        assert stale.status_code == 403, stale.text
        huge = b"x" * (2 * 1024 * 1024)
        oversized = world.call_back(webhook_url(TABLEFLOW, "whatsapp", "twilio"), {}, huge)
        assert oversized.status_code == 413

        assert _events_api(world, TABLEFLOW) == before
        assert _events_api(world, ROE) == []
        assert world.message(TABLEFLOW, message["id"])["status"] == "sent"
        time.sleep(1)
        assert len(platform.requests) == 1
