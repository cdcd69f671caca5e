"""Events and opt-outs through a real daemon and the seed's tenants (SPEC sections 8 and 9).

The tenants' platform is a receiving server on loopback that verifies every post with the
``standardwebhooks`` package. A message's sent and delivered, an inbound "REPROGRAMAR" and a
Twilio -> Meta failover arrive as events; an endpoint down, the daemon killed with kill -9 in the
middle of a post and started again, then the endpoint back: every event arrives, one webhook-id
per event. Inbound STOP/START, a SendGrid bounce and the suppressions API change who may be sent
to; forged, stale and oversized provider callbacks change nothing and emit no event.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks import Webhook
from starlette.responses import Response

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
from tests.fakes.server import FakeServer, RecordedRequest

SECRET = "whsec_" + base64.b64encode(b"tableflow-platform-signing-key-0001").decode()
CUSTOMER = "+34600111222"


class Platform:
    """The tenants' platform: answers from ``answers`` first (an int status, or "hold" to keep
    the post waiting until released), then 204; every post is kept."""

    def __init__(self) -> None:
        self.answers: list[int | str] = []
        self.release = threading.Event()
        self.server = FakeServer(self._answer)

    def _answer(self, request: RecordedRequest) -> Response:
        answer = self.answers.pop(0) if self.answers else 204
        if answer == "hold":
            self.release.wait(timeout=120)
            return Response(status_code=204)
        return Response(status_code=int(answer))

    def events(self) -> list[dict[str, Any]]:
        """Every post, verified as a receiver does it, with its webhook-id."""
        hook = Webhook(SECRET)
        verified = []
        for request in list(self.server.requests):
            payload = hook.verify(request.body, request.headers)
            verified.append({"webhook-id": request.headers["webhook-id"], **payload})
        return verified

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["type"] == event_type]


@pytest.fixture
def platform() -> Iterator[Platform]:
    platform = Platform()
    with platform.server:
        try:
            yield platform
        finally:
            platform.release.set()


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
        _subscribe(world, TABLEFLOW, platform.server.url)
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
        everything = b"".join(r.body for r in platform.server.requests)
        for name, value in ENV.items():
            if name.startswith("TABLEFLOW_") and name != "TABLEFLOW_API_KEY":
                assert value.encode() not in everything, name


def test_an_endpoint_down_then_a_kill_9_mid_post_loses_no_event(
    tmp_path: Path, platform: Platform
) -> None:
    with running_world(tmp_path) as world:
        _subscribe(world, TABLEFLOW, platform.server.url)
        case = SENDS["tableflow-whatsapp-twilio"]
        # the platform is down for the first posts (each of the three events fails once)
        platform.answers = [503, 503, 503]
        first = [world.send(case) for _ in range(3)]
        for message_id in first:
            world.settled(TABLEFLOW, message_id)
        wait_until(lambda: len(platform.server.requests) >= 3)

        # then it hangs on a post, and the daemon is killed while the post is in flight
        platform.answers = ["hold"]
        held_id = world.send(case)
        world.settled(TABLEFLOW, held_id)
        wait_until(lambda: platform.server.answered < len(platform.server.requests))
        world.daemon.kill()
        platform.release.set()

        world.daemon = Daemon(
            world.daemon.config, world.daemon.port, world.daemon.env, tmp_path / "daemon-1.log"
        )
        world.start()
        after = world.send(case)  # and the daemon goes on
        world.settled(TABLEFLOW, after)

        expected = {*first, held_id, after}

        def every_event_delivered() -> bool:
            items = _events_api(world, TABLEFLOW)
            sent = {e["data"]["id"] for e in items if e["type"] == "message.sent"}
            states = {d["state"] for e in items for d in e["deliveries"]}
            return sent == expected and states == {"delivered"}

        # the failed posts come back after the schedule's 5 s; the one cut by the kill after its
        # claim's 30 s lease
        wait_until(every_event_delivered, timeout=120, interval=1.0)
        received = platform.of_type("message.sent")
        assert {e["data"]["id"] for e in received} == expected  # 0 lost
        by_event: dict[str, set[str]] = {}
        for event in received:
            by_event.setdefault(event["data"]["id"], set()).add(event["webhook-id"])
        # one webhook-id per event, the same on every retry
        assert all(len(ids) == 1 for ids in by_event.values()), by_event
        assert len({next(iter(ids)) for ids in by_event.values()}) == len(expected)
        retried = [e for e in _events_api(world, TABLEFLOW) if e["deliveries"][0]["attempts"] > 1]
        assert {e["data"]["id"] for e in retried} >= set(first)


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
        _subscribe(world, TABLEFLOW, platform.server.url)
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
        assert len(platform.server.requests) == 1
