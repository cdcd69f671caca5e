"""The issue's acceptance scenario, end to end through a real ``pipecored serve`` process.

SPEC's three example tenants (TableFlow, Genda, ROE) on the four built-in providers, each served by
a loopback fake that answers like the real API and records what it got: six sends in Spanish, the
providers' signed delivery callbacks (and forged or stale ones), inbound replies, Meta's
subscription check, stats, a failover from Twilio to Meta, and two provider switches through the
admin API that take effect at once, are written to the tenant files and survive a restart.

The daemon's ``server.publicUrl`` is a public address it never calls: the providers are told to
call it back there and sign against it, and the tests deliver each callback to the daemon's
loopback port with that URL's path and query, as a reverse proxy would.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import stat
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    ADMIN_KEY,
    ConfigDir,
    Daemon,
    default_daemon_settings,
    free_port,
    wait_until,
)
from tests.fakes import meta as meta_fake
from tests.fakes import resend as resend_fake
from tests.fakes import sendgrid as sendgrid_fake
from tests.fakes import twilio as twilio_fake
from tests.fakes.meta import FakeMeta, validate_meta_request
from tests.fakes.resend import FakeResend
from tests.fakes.sendgrid import EventWebhookSigner, FakeSendGrid
from tests.fakes.server import RecordedRequest
from tests.fakes.specs import validate_request
from tests.fakes.twilio import FakeTwilio

PUBLIC_URL = "https://pipecore.example.com"
MAX_ATTEMPTS = 2

TABLEFLOW, GENDA, ROE = "tableflow_123", "genda_456", "roe_789"


def _twilio_sid(seed: str) -> str:
    """A realistic, fixed Account SID: AC + 32 hex digits (Twilio's document checks it)."""
    return "AC" + uuid.uuid5(uuid.NAMESPACE_DNS, seed).hex


def _svix_secret(seed: str) -> str:
    return "whsec_" + base64.b64encode(seed.encode().ljust(32, b"#")).decode()


TF_TWILIO_SID = _twilio_sid("tableflow.twilio")
ROE_TWILIO_SID = _twilio_sid("roe.twilio")
TF_META_PHONE_ID = "106540352242922"
GENDA_META_PHONE_ID = "109876543210987"
TF_WHATSAPP_NUMBER = "whatsapp:+14155238886"
ROE_SMS_NUMBER = "+15005550006"

# Every secret the tenant files hold comes from the daemon's environment through ${NAME}.
ENV = {
    "PIPECORE_ADMIN_KEY": ADMIN_KEY,
    "TABLEFLOW_API_KEY": "tf-live-key-7c1f0a9e4b2d",
    "TABLEFLOW_TWILIO_TOKEN": "tf-twilio-auth-token-93b1c0d2e4f5",
    "TABLEFLOW_META_TOKEN": "EAAGtableflowMetaAccessToken0123456789",
    "TABLEFLOW_META_VERIFY_TOKEN": "tf-meta-verify-token-5566",
    "TABLEFLOW_META_APP_SECRET": "tf-meta-app-secret-a1b2c3d4e5f6",
    "TABLEFLOW_RESEND_KEY": "re_tableflow_resend_key_0123456789",
    "TABLEFLOW_RESEND_WEBHOOK_SECRET": _svix_secret("tableflow-resend-signing-key"),
    "GENDA_API_KEY": "genda-live-key-4d5e6f7a8b9c",
    "GENDA_META_TOKEN": "EAAGgendaMetaAccessToken9876543210",
    "GENDA_META_VERIFY_TOKEN": "genda-meta-verify-token-7788",
    "GENDA_META_APP_SECRET": "genda-meta-app-secret-f6e5d4c3b2a1",
    "GENDA_RESEND_KEY": "re_genda_resend_key_9876543210",
    "GENDA_RESEND_WEBHOOK_SECRET": _svix_secret("genda-resend-signing-key"),
    "ROE_API_KEY": "roe-live-key-1a2b3c4d5e6f",
    "ROE_SENDGRID_KEY": "SG.roe_sendgrid_key.0123456789abcdef",
    "ROE_TWILIO_TOKEN": "roe-twilio-auth-token-0a1b2c3d4e5f",
}
KEYS = {TABLEFLOW: ENV["TABLEFLOW_API_KEY"], GENDA: ENV["GENDA_API_KEY"], ROE: ENV["ROE_API_KEY"]}
FROM_EMAIL = {
    TABLEFLOW: "noreply@tableflow.com",
    GENDA: "citas@genda.health",
    ROE: "pedidos@roe.shop",
}

# ROE's Resend account, sent in the provider switch (not from the environment).
ROE_RESEND_KEY = "re_roe_resend_key_5a6b7c8d9e0f"
ROE_RESEND_WEBHOOK_SECRET = _svix_secret("roe-resend-signing-key")


def _tenant_files(sendgrid_public_key: str) -> dict[str, dict[str, Any]]:
    return {
        TABLEFLOW: {
            "name": "TableFlow",
            "apiKeys": ["${TABLEFLOW_API_KEY}"],
            "channels": {
                "whatsapp": {
                    "provider": "twilio",
                    "credentials": {
                        "accountSid": TF_TWILIO_SID,
                        "authToken": "${TABLEFLOW_TWILIO_TOKEN}",
                        "whatsappNumber": TF_WHATSAPP_NUMBER,
                    },
                    "isActive": True,
                    "fallbacks": [
                        {
                            "provider": "meta",
                            "credentials": {
                                "accessToken": "${TABLEFLOW_META_TOKEN}",
                                "phoneNumberId": TF_META_PHONE_ID,
                                "verifyToken": "${TABLEFLOW_META_VERIFY_TOKEN}",
                                "appSecret": "${TABLEFLOW_META_APP_SECRET}",
                            },
                        }
                    ],
                },
                "email": {
                    "provider": "resend",
                    "credentials": {
                        "apiKey": "${TABLEFLOW_RESEND_KEY}",
                        "fromEmail": FROM_EMAIL[TABLEFLOW],
                        "webhookSecret": "${TABLEFLOW_RESEND_WEBHOOK_SECRET}",
                    },
                    "isActive": True,
                },
            },
        },
        GENDA: {
            "name": "Genda",
            "apiKeys": ["${GENDA_API_KEY}"],
            "channels": {
                "whatsapp": {
                    "provider": "meta",
                    "credentials": {
                        "accessToken": "${GENDA_META_TOKEN}",
                        "phoneNumberId": GENDA_META_PHONE_ID,
                        "verifyToken": "${GENDA_META_VERIFY_TOKEN}",
                        "appSecret": "${GENDA_META_APP_SECRET}",
                    },
                },
                "email": {
                    "provider": "resend",
                    "credentials": {
                        "apiKey": "${GENDA_RESEND_KEY}",
                        "fromEmail": FROM_EMAIL[GENDA],
                        "webhookSecret": "${GENDA_RESEND_WEBHOOK_SECRET}",
                    },
                },
            },
        },
        ROE: {
            "name": "ROE",
            "apiKeys": ["${ROE_API_KEY}"],
            "channels": {
                "email": {
                    "provider": "sendgrid",
                    "credentials": {
                        "apiKey": "${ROE_SENDGRID_KEY}",
                        "fromEmail": FROM_EMAIL[ROE],
                        "webhookPublicKey": sendgrid_public_key,
                    },
                },
                "sms": {
                    "provider": "twilio",
                    "credentials": {
                        "accountSid": ROE_TWILIO_SID,
                        "authToken": "${ROE_TWILIO_TOKEN}",
                        "phoneNumber": ROE_SMS_NUMBER,
                    },
                },
            },
        },
    }


# The six sends: Spanish with accents, ñ, ¿¡, emoji and newlines.


@dataclass(frozen=True)
class Send:
    tenant: str
    channel: str
    provider: str
    body: Mapping[str, Any]
    final_status: str  # after the delivery callbacks

    @property
    def key(self) -> str:
        return KEYS[self.tenant]

    @property
    def text(self) -> str:
        return str(self.body.get("body") or self.body["textContent"])


SENDS: dict[str, Send] = {
    "tableflow-whatsapp-twilio": Send(
        TABLEFLOW,
        "whatsapp",
        "twilio",
        {
            "tenant_id": TABLEFLOW,
            "to": "+34600111222",
            "body": "¡Hola, Begoña! 🍷\n¿Confirmas tu reserva para mañana a las 21:30?\n"
            "Responde SÍ o REPROGRAMAR.",
        },
        "delivered",
    ),
    "tableflow-email-resend": Send(
        TABLEFLOW,
        "email",
        "resend",
        {
            "tenant_id": TABLEFLOW,
            "to": "begona.nunez@example.com",
            "subject": "¿Tu mesa para mañana? ¡Confirmada! 🍽️",
            "htmlContent": "<h1>¡Reserva confirmada!</h1>\n"
            "<p>Señora Núñez: la esperamos el miércoles a las 21:30 🍷</p>",
            "textContent": "¡Reserva confirmada!\nSeñora Núñez: la esperamos el miércoles a las"
            " 21:30 🍷",
        },
        "delivered",
    ),
    "genda-whatsapp-meta": Send(
        GENDA,
        "whatsapp",
        "meta",
        {
            "tenant_id": GENDA,
            "to": "+34600555666",
            "body": "Recordatorio de Genda 🦷\nCita con la Dra. Ibáñez el jueves a las 10:15.\n"
            "¿Necesitas cambiarla? ¡Responde REPROGRAMAR!",
        },
        "read",
    ),
    "genda-email-resend": Send(
        GENDA,
        "email",
        "resend",
        {
            "tenant_id": GENDA,
            "to": ["iñigo.peña@example.com", "pacientes@example.com"],
            "subject": "Tu cita del jueves — Clínica Peñalara 🦷",
            "htmlContent": "<p>Hola Íñigo,</p>\n<p>¿Puedes confirmar tu cita? ¡Gracias! 😊</p>",
            "textContent": "Hola Íñigo,\n¿Puedes confirmar tu cita? ¡Gracias! 😊",
        },
        "delivered",
    ),
    "roe-email-sendgrid": Send(
        ROE,
        "email",
        "sendgrid",
        {
            "tenant_id": ROE,
            "to": "maria.ordonez@example.com",
            "subject": "Tu pedido #4521 ya está en camino 📦",
            "htmlContent": "<p>¡Buenas noticias, María!</p>\n<p>Tu pedido llegará mañana. 🚚</p>",
            "textContent": "¡Buenas noticias, María!\nTu pedido llegará mañana. 🚚",
        },
        "read",
    ),
    "roe-sms-twilio": Send(
        ROE,
        "sms",
        "twilio",
        {
            "tenant_id": ROE,
            "to": "+34600333444",
            "body": "ROE: tu pedido #4521 llegará mañana entre las 9:00 y las 11:00 🚚\n"
            "¿Dudas? ¡Escríbenos! Señal de ñandú incluida.",
        },
        "delivered",
    ),
}
SEND_CASES = [pytest.param(name, id=name) for name in SENDS]


def resend_account(tenant: str) -> tuple[str, str]:
    """The tenant's Resend API key and webhook signing secret."""
    if tenant == ROE:  # only after the switch
        return ROE_RESEND_KEY, ROE_RESEND_WEBHOOK_SECRET
    prefix = "TABLEFLOW" if tenant == TABLEFLOW else "GENDA"
    return ENV[f"{prefix}_RESEND_KEY"], ENV[f"{prefix}_RESEND_WEBHOOK_SECRET"]


def _mask(secret: str) -> str:
    return "****" + secret[-4:]


# A running daemon with its four fake providers.


@dataclass
class World:
    config: ConfigDir
    twilio: FakeTwilio
    meta: FakeMeta
    resend: FakeResend
    sendgrid: FakeSendGrid
    signer: EventWebhookSigner
    daemon: Daemon
    daemons: list[Daemon] = field(default_factory=list)  # every process started, to stop

    def start(self) -> World:
        self.daemons.append(self.daemon)
        self.daemon.start()
        return self

    def client(self, key: str) -> httpx.Client:
        return self.daemon.client(key)

    def fakes(self) -> dict[str, Any]:
        return {
            "twilio": self.twilio,
            "meta": self.meta,
            "resend": self.resend,
            "sendgrid": self.sendgrid,
        }

    def call_back(
        self, url: str, headers: Mapping[str, str], body: bytes = b"", method: str = "POST"
    ) -> httpx.Response:
        """Deliver a provider's request for ``url`` (a public URL) to the daemon's loopback port."""
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL, url
        target = self.daemon.url + parts.path + (f"?{parts.query}" if parts.query else "")
        return httpx.request(method, target, content=body, headers=dict(headers), timeout=10)

    def message(self, tenant: str, message_id: str) -> dict[str, Any]:
        with self.client(KEYS[tenant]) as client:
            r = client.get(f"/messaging/messages/{message_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def send(self, case: Send) -> str:
        with self.client(case.key) as client:
            r = client.post(f"/messaging/send/{case.channel}", json=dict(case.body))
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["status"] == "queued"
        assert (accepted["tenantId"], accepted["channel"]) == (case.tenant, case.channel)
        return str(accepted["id"])

    def settled(self, tenant: str, message_id: str) -> dict[str, Any]:
        """The message once delivery is over (sent, or failed): never queued or sending."""
        return wait_until(  # type: ignore[no-any-return]
            lambda: (
                (m := self.message(tenant, message_id))["status"] not in ("queued", "sending") and m
            )
        )


def webhook_url(tenant: str, channel: str, provider: str) -> str:
    return f"{PUBLIC_URL}/messaging/webhook/{channel}?tenant_id={tenant}&provider={provider}"


def _daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECORE", "PYTEST"))}
    env.update(ENV)
    return env


@contextlib.contextmanager
def running_world(root: Path) -> Iterator[World]:
    twilio = FakeTwilio(
        {TF_TWILIO_SID: ENV["TABLEFLOW_TWILIO_TOKEN"], ROE_TWILIO_SID: ENV["ROE_TWILIO_TOKEN"]}
    )
    meta = FakeMeta(
        {
            TF_META_PHONE_ID: ENV["TABLEFLOW_META_TOKEN"],
            GENDA_META_PHONE_ID: ENV["GENDA_META_TOKEN"],
        }
    )
    resend = FakeResend()  # one key per tenant: checked per request below
    sendgrid = FakeSendGrid(api_key=ENV["ROE_SENDGRID_KEY"])
    signer = EventWebhookSigner()
    with twilio, meta, resend, sendgrid:
        config = ConfigDir(root / "config")
        (config.path / "tenants").mkdir(parents=True)
        settings = default_daemon_settings(root / "pipecored.db", maxAttempts=MAX_ATTEMPTS)
        settings["auth"] = {"adminKeys": ["${PIPECORE_ADMIN_KEY}"]}
        settings["server"] = {"publicUrl": PUBLIC_URL}
        settings["providers"] = {
            "twilio": {"baseUrl": twilio.url},
            "meta": {"baseUrl": meta.url, "apiVersion": "v23.0"},
            "resend": {"baseUrl": resend.url},
            "sendgrid": {"baseUrl": sendgrid.url},
        }
        config.write_daemon(settings)
        for tenant, data in _tenant_files(signer.public_key).items():
            config.write_tenant(tenant, data)
        daemon = Daemon(config.path, free_port(), _daemon_env(), root / "daemon-0.log")
        world = World(config, twilio, meta, resend, sendgrid, signer, daemon)
        try:
            yield world.start()
        finally:
            for started in world.daemons:
                started.ensure_stopped()


def restart(world: World, root: Path) -> None:
    """SIGTERM (exit 0), then a new process on the same config dir, database and port."""
    old = world.daemon
    assert old.stop() == 0, old.output()
    world.daemon = Daemon(old.config, old.port, old.env, root / "daemon-1.log")
    world.start()


# What each fake recorded for a send.


def _form(request: RecordedRequest) -> dict[str, str]:
    parsed = parse_qs(request.body.decode("utf-8", errors="strict"), keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


def _json(request: RecordedRequest) -> Any:
    return json.loads(request.body.decode("utf-8", errors="strict"))


SEND_PATHS = {
    "twilio": r"/2010-04-01/Accounts/[^/]+/Messages\.json",
    "meta": r"/v[0-9.]+/[0-9]+/messages",
    "resend": r"/emails",
    "sendgrid": r"/v3/mail/send",
}


def send_requests(world: World, provider: str) -> list[RecordedRequest]:
    """What the provider's fake recorded of the sends (not the other calls: Resend's fetch of a
    received email, for one)."""
    return [
        r
        for r in world.fakes()[provider].requests
        if r.method == "POST" and re.fullmatch(SEND_PATHS[provider], r.path)
    ]


def recorded_requests(world: World, case: Send) -> list[RecordedRequest]:
    """The requests that carried ``case`` to its provider (found by its unique text)."""
    sends = send_requests(world, case.provider)
    if case.provider == "twilio":
        return [r for r in sends if _form(r).get("Body") == case.text]
    if case.provider == "meta":
        return [r for r in sends if _json(r).get("text", {}).get("body") == case.text]
    if case.provider == "resend":
        return [r for r in sends if _json(r).get("text") == case.text]
    return [r for r in sends if any(c.get("value") == case.text for c in _json(r)["content"])]


def validate(provider: str, request: RecordedRequest) -> None:
    if provider == "meta":
        validate_meta_request(request)
    else:
        validate_request(provider, request)


def check_provider_request(
    world: World, case: Send, message_id: str, provider_message_id: str
) -> None:
    """The one request the provider got for ``case``: valid for its OpenAPI document, the text
    byte-exact, the tenant's own credentials, and what each provider needs to call back."""
    requests = recorded_requests(world, case)
    assert len(requests) == 1, f"{case.provider} got {len(requests)} requests for {message_id}"
    request = requests[0]
    validate(case.provider, request)
    if case.provider == "twilio":
        sid = TF_TWILIO_SID if case.tenant == TABLEFLOW else ROE_TWILIO_SID
        assert request.path == f"/2010-04-01/Accounts/{sid}/Messages.json"
        form = _form(request)
        assert form["Body"] == case.body["body"]
        if case.channel == "whatsapp":
            assert form["To"] == "whatsapp:" + case.body["to"]
            assert form["From"] == TF_WHATSAPP_NUMBER
        else:
            assert form["To"] == case.body["to"]
            assert form["From"] == ROE_SMS_NUMBER
        assert form["StatusCallback"] == webhook_url(case.tenant, case.channel, "twilio")
        sent = next(m for m in world.twilio.messages if m.body == case.text)
        assert sent.account_sid == sid
        assert provider_message_id == sent.sid
    elif case.provider == "meta":
        phone_id = TF_META_PHONE_ID if case.tenant == TABLEFLOW else GENDA_META_PHONE_ID
        token = ENV["TABLEFLOW_META_TOKEN" if case.tenant == TABLEFLOW else "GENDA_META_TOKEN"]
        assert request.path == f"/v23.0/{phone_id}/messages"
        assert request.headers["authorization"] == f"Bearer {token}"
        payload = _json(request)
        assert payload["text"]["body"] == case.body["body"]
        assert payload["to"] == case.body["to"].removeprefix("+")
        sent_wa = next(m for m in world.meta.messages if m.body == case.text)
        assert provider_message_id == sent_wa.id
    elif case.provider == "resend":
        api_key, _ = resend_account(case.tenant)
        assert request.path == "/emails"
        assert request.headers["authorization"] == f"Bearer {api_key}"
        assert request.headers["idempotency-key"] == message_id
        assert request.headers.get("user-agent")
        email = _json(request)
        to = case.body["to"]
        assert email["to"] == (to if isinstance(to, list) else [to])
        assert email["from"] == FROM_EMAIL[case.tenant]
        assert email["subject"] == case.body["subject"]
        assert email["html"] == case.body["htmlContent"]
        assert email["text"] == case.body["textContent"]
        accepted = next(e for e in world.resend.emails if e.get("text") == case.text)
        assert provider_message_id == accepted["id"]
    else:
        assert request.path == "/v3/mail/send"
        assert request.headers["authorization"] == f"Bearer {ENV['ROE_SENDGRID_KEY']}"
        mail = _json(request)
        (personalization,) = mail["personalizations"]
        assert personalization["to"] == [{"email": case.body["to"]}]
        assert personalization["custom_args"]["pipecore_message_id"] == message_id
        assert mail["from"] == {"email": FROM_EMAIL[ROE]}
        assert mail["subject"] == case.body["subject"]
        assert mail["content"] == [
            {"type": "text/plain", "value": case.body["textContent"]},
            {"type": "text/html", "value": case.body["htmlContent"]},
        ]
        accepted_sg = next(m for m in world.sendgrid.messages if m["subject"] == mail["subject"])
        assert provider_message_id == accepted_sg["x_message_id"]


# Callbacks as each provider makes them.


@dataclass(frozen=True)
class Callback:
    url: str
    headers: Mapping[str, str]
    body: bytes


def delivery_callbacks(
    world: World, case: Send, message: Mapping[str, Any], *, forged: bool = False
) -> list[Callback]:
    """The provider's callbacks for ``message``: progress up to ``case.final_status``, or (forged)
    one that would fail it, signed with a key that is not the tenant's."""
    pid = message["providerMessageId"]
    url = webhook_url(case.tenant, case.channel, case.provider)
    if case.provider == "twilio":
        sid = TF_TWILIO_SID if case.tenant == TABLEFLOW else ROE_TWILIO_SID
        token = world.twilio.accounts[sid]
        sent = next(m for m in world.twilio.messages if m.sid == pid)
        assert sent.status_callback is not None
        states = ["undelivered"] if forged else ["sent", "delivered"]
        signed = [
            twilio_fake.sign_form(
                sent.status_callback,
                "forged-" + token if forged else token,
                twilio_fake.status_callback_params(
                    message_sid=pid,
                    status=state,
                    account_sid=sid,
                    to=sent.to,
                    from_=sent.from_ or "",
                    error_code="30003" if forged else None,
                    channel=case.channel,
                ),
            )
            for state in states
        ]
        return [Callback(s.url, s.headers, s.body) for s in signed]
    if case.provider == "meta":
        phone_id = TF_META_PHONE_ID if case.tenant == TABLEFLOW else GENDA_META_PHONE_ID
        secret = ENV[
            "TABLEFLOW_META_APP_SECRET" if case.tenant == TABLEFLOW else "GENDA_META_APP_SECRET"
        ]
        recipient = str(case.body["to"]).removeprefix("+")
        if forged:
            statuses = [
                meta_fake.status(
                    pid,
                    "failed",
                    recipient_id=recipient,
                    errors=[meta_fake.status_error(131026, "Message undeliverable")],
                )
            ]
            secret = "forged-" + secret
        else:
            statuses = [
                meta_fake.status(pid, state, recipient_id=recipient)
                for state in ("sent", "delivered", "read")
            ]
        signed_meta = [
            meta_fake.signed_notification(
                url, secret, meta_fake.notification([meta_fake.change(phone_id, statuses=[s])])
            )
            for s in statuses
        ]
        return [Callback(s.url, s.headers, s.body) for s in signed_meta]
    if case.provider == "resend":
        _, secret = resend_account(case.tenant)
        to = case.body["to"]
        recipients = tuple(to) if isinstance(to, list) else (to,)
        events = ["email.bounced"] if forged else ["email.sent", "email.delivered"]
        if forged:
            secret = _svix_secret("someone-else")
        result = []
        for event_type in events:
            payload = resend_fake.email_event(
                event_type,
                pid,
                to=recipients,
                sender=FROM_EMAIL[case.tenant],
                subject=case.body["subject"],
            )
            headers, body = resend_fake.webhook(secret, payload)
            result.append(Callback(url, headers, body))
        return result
    signer = EventWebhookSigner() if forged else world.signer
    names = ["bounce"] if forged else ["processed", "delivered", "open"]
    headers, body = signer.webhook(
        [
            sendgrid_fake.event(name, pid, email=case.body["to"], pipecore_message_id=message["id"])
            for name in names
        ]
    )
    return [Callback(url, headers, body)]


def metric_value(world: World, name: str, **labels: str) -> float:
    text = httpx.get(f"{world.daemon.url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# The seed scenario on one daemon: six sends, then callbacks, inbound replies and stats.


@dataclass
class Seed:
    """One daemon shared by the module's tests, which run in any order: each test looks only at
    what the six sends left, or at what it did itself."""

    world: World
    ids: dict[str, str]  # case name -> message id
    settled: dict[str, dict[str, Any]]  # case name -> the message once sent
    # provider -> the requests its fake had recorded once the six sends were settled
    requests: dict[str, list[RecordedRequest]]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    with running_world(tmp_path_factory.mktemp("seed")) as world:
        ids = {name: world.send(case) for name, case in SENDS.items()}
        settled = {name: world.settled(SENDS[name].tenant, ids[name]) for name in SENDS}
        requests = {provider: list(fake.requests) for provider, fake in world.fakes().items()}
        yield Seed(world, ids, settled, requests)


@pytest.mark.parametrize("name", SEND_CASES)
def test_each_send_reaches_its_tenants_provider_intact(seed: Seed, name: str) -> None:
    case = SENDS[name]
    message = seed.settled[name]
    assert message["status"] == "sent", message
    assert message["provider"] == case.provider
    assert message["providerMessageId"]
    assert (message["tenantId"], message["channel"], message["direction"]) == (
        case.tenant,
        case.channel,
        "outbound",
    )
    assert [(a["provider"], a["outcome"]) for a in message["attempts"]] == [
        (case.provider, "success")
    ]
    check_provider_request(seed.world, case, seed.ids[name], message["providerMessageId"])
    # Another tenant's key does not see it.
    other = next(t for t in KEYS if t != case.tenant)
    with seed.world.client(KEYS[other]) as client:
        assert client.get(f"/messaging/messages/{seed.ids[name]}").status_code == 404


@pytest.mark.parametrize(
    "provider", [pytest.param(p, id=p) for p in ("twilio", "meta", "resend", "sendgrid")]
)
def test_every_request_a_fake_recorded_matches_the_providers_openapi_document(
    seed: Seed, provider: str
) -> None:
    expected = sum(1 for case in SENDS.values() if case.provider == provider)
    assert len(seed.requests[provider]) == expected  # the sends, and nothing else
    # every request, including those the module's other tests have made it record since
    for request in seed.world.fakes()[provider].requests:
        validate(provider, request)


@pytest.mark.parametrize("name", SEND_CASES)
def test_signed_delivery_callbacks_move_each_message_on(seed: Seed, name: str) -> None:
    case = SENDS[name]
    world = seed.world
    for callback in delivery_callbacks(world, case, seed.settled[name]):
        r = world.call_back(callback.url, callback.headers, callback.body)
        assert r.status_code == 200, r.text
        if case.provider == "twilio":
            assert r.headers["content-type"].startswith("text/xml")
    message = world.message(case.tenant, seed.ids[name])
    assert message["status"] == case.final_status, message
    assert message["provider"] == case.provider
    assert message["providerMessageId"] == seed.settled[name]["providerMessageId"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("tableflow-whatsapp-twilio", id="twilio-wrong-auth-token"),
        pytest.param("genda-whatsapp-meta", id="meta-wrong-app-secret"),
        pytest.param("tableflow-email-resend", id="resend-wrong-svix-secret"),
        pytest.param("roe-email-sendgrid", id="sendgrid-wrong-key-pair"),
    ],
)
def test_a_forged_callback_is_refused_and_changes_nothing(seed: Seed, name: str) -> None:
    case = SENDS[name]
    world = seed.world
    before = world.message(case.tenant, seed.ids[name])
    refused_before = metric_value(
        world, "pipecore_webhooks_total", tenant=case.tenant, result="bad_signature"
    )
    (forged,) = delivery_callbacks(world, case, seed.settled[name], forged=True)
    r = world.call_back(forged.url, forged.headers, forged.body)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "bad_signature"
    assert world.message(case.tenant, seed.ids[name]) == before
    assert (
        metric_value(world, "pipecore_webhooks_total", tenant=case.tenant, result="bad_signature")
        == refused_before + 1
    )


@pytest.mark.parametrize(
    ("name", "age"),
    [
        pytest.param("tableflow-email-resend", timedelta(minutes=6), id="resend-svix-6-min-old"),
        pytest.param("genda-email-resend", timedelta(minutes=-6), id="resend-svix-6-min-in-future"),
        pytest.param("roe-email-sendgrid", timedelta(minutes=11), id="sendgrid-11-min-old"),
    ],
)
def test_a_correctly_signed_but_stale_callback_is_refused(
    seed: Seed, name: str, age: timedelta
) -> None:
    case = SENDS[name]
    world = seed.world
    before = world.message(case.tenant, seed.ids[name])
    pid = before["providerMessageId"]
    url = webhook_url(case.tenant, case.channel, case.provider)
    moment = datetime.now(UTC) - age
    if case.provider == "resend":
        _, secret = resend_account(case.tenant)
        payload = resend_fake.email_event(
            "email.bounced",
            pid,
            to=tuple(case.body["to"]) if isinstance(case.body["to"], list) else (case.body["to"],),
            sender=FROM_EMAIL[case.tenant],
            created_at=moment,
        )
        headers, body = resend_fake.webhook(secret, payload, timestamp=moment)
    else:
        headers, body = world.signer.webhook(
            [sendgrid_fake.event("bounce", pid, pipecore_message_id=before["id"])],
            timestamp=moment,
        )
    r = world.call_back(url, headers, body)
    assert r.status_code == 403, r.text
    assert world.message(case.tenant, seed.ids[name]) == before


@pytest.mark.parametrize(
    ("tenant", "provider"),
    [
        pytest.param(TABLEFLOW, "twilio", id="tableflow-via-twilio"),
        pytest.param(GENDA, "meta", id="genda-via-meta"),
    ],
)
def test_an_inbound_whatsapp_reply_is_logged(seed: Seed, tenant: str, provider: str) -> None:
    world = seed.world
    url = webhook_url(tenant, "whatsapp", provider)
    if provider == "twilio":
        customer = "+34600111222"
        params = twilio_fake.inbound_params(
            body="REPROGRAMAR",
            from_=customer,
            to=TF_WHATSAPP_NUMBER,
            account_sid=TF_TWILIO_SID,
            channel="whatsapp",
        )
        form = twilio_fake.sign_form(url, ENV["TABLEFLOW_TWILIO_TOKEN"], params)
        callback = Callback(form.url, form.headers, form.body)
        provider_id = params["MessageSid"]
    else:
        customer = "+34600555666"
        reply = meta_fake.inbound(customer.removeprefix("+"), body="REPROGRAMAR")
        notification = meta_fake.signed_notification(
            url,
            ENV["GENDA_META_APP_SECRET"],
            meta_fake.notification([meta_fake.change(GENDA_META_PHONE_ID, messages=[reply])]),
        )
        callback = Callback(notification.url, notification.headers, notification.body)
        provider_id = reply["id"]
    r = world.call_back(callback.url, callback.headers, callback.body)
    assert r.status_code == 200, r.text

    with world.client(KEYS[tenant]) as client:
        logs = client.get(
            f"/messaging/logs/{tenant}", params={"direction": "inbound", "channel": "whatsapp"}
        )
    assert logs.status_code == 200, logs.text
    items = logs.json()["items"]
    assert len(items) == 1, items
    (item,) = items
    assert item["direction"] == "inbound"
    assert item["status"] == "received"
    assert (item["tenantId"], item["channel"], item["provider"]) == (tenant, "whatsapp", provider)
    assert item["from"] == customer
    assert item["body"] == "REPROGRAMAR"
    assert item["providerMessageId"] == provider_id


def test_an_inbound_email_through_resend_is_logged_with_its_fetched_body(seed: Seed) -> None:
    # Resend's email.received names the email; the daemon fetches its text with the tenant's key.
    # A fetch Resend fails is answered 503 with nothing logged, so that Resend calls again.
    world = seed.world
    email_id = "0b6a2c7e-5d1f-4f7a-9c3e-8e2d1a4b6c90"
    text = "Hola, ¿tenéis cita el jueves por la tarde? Gracias 🙏"
    world.resend.receive(email_id, text=text, html=None, subject="Cita")
    key, secret = resend_account(GENDA)
    payload = resend_fake.email_event(
        "email.received",
        email_id,
        sender="Lucía Gómez <lucia@example.com>",
        to=(FROM_EMAIL[GENDA],),
        subject="Cita el jueves",
    )
    url = webhook_url(GENDA, "email", "resend")

    def inbound() -> list[dict[str, Any]]:
        with world.client(KEYS[GENDA]) as client:
            logs = client.get(
                f"/messaging/logs/{GENDA}", params={"direction": "inbound", "channel": "email"}
            )
        assert logs.status_code == 200, logs.text
        items: list[dict[str, Any]] = logs.json()["items"]
        return items

    world.resend.fail_next(503, times=1)
    headers, body = resend_fake.webhook(secret, payload)
    refused = world.call_back(url, headers, body)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "provider_unavailable"
    assert inbound() == []

    headers, body = resend_fake.webhook(secret, payload)
    r = world.call_back(url, headers, body)
    assert r.status_code == 200, r.text
    fetches = [q for q in world.resend.requests if q.path == f"/emails/receiving/{email_id}"]
    assert [q.headers["authorization"] for q in fetches] == [f"Bearer {key}"] * 2
    (item,) = inbound()
    assert (item["provider"], item["from"], item["body"]) == ("resend", "lucia@example.com", text)
    assert item["providerMessageId"] == email_id


@pytest.mark.parametrize(
    ("verify_token", "expected_status"),
    [
        pytest.param(ENV["GENDA_META_VERIFY_TOKEN"], 200, id="right-verify-token"),
        pytest.param("not-the-verify-token", 403, id="wrong-verify-token"),
    ],
)
def test_metas_subscription_check(seed: Seed, verify_token: str, expected_status: int) -> None:
    check = meta_fake.subscription_check(
        webhook_url(GENDA, "whatsapp", "meta"), verify_token=verify_token, challenge="1158201444"
    )
    r = seed.world.call_back(check.url, check.headers, method="GET")
    assert r.status_code == expected_status, r.text
    if expected_status == 200:
        assert r.text == "1158201444"
    else:
        assert "1158201444" not in r.text


@pytest.mark.parametrize(
    ("tenant", "by_provider", "by_channel"),
    [
        pytest.param(
            TABLEFLOW, {"twilio": 1, "resend": 1}, {"whatsapp": 1, "email": 1}, id=TABLEFLOW
        ),
        pytest.param(GENDA, {"meta": 1, "resend": 1}, {"whatsapp": 1, "email": 1}, id=GENDA),
        pytest.param(ROE, {"sendgrid": 1, "twilio": 1}, {"email": 1, "sms": 1}, id=ROE),
    ],
)
def test_stats_reflect_each_tenants_sends(
    seed: Seed, tenant: str, by_provider: dict[str, int], by_channel: dict[str, int]
) -> None:
    with seed.world.client(KEYS[tenant]) as client:
        r = client.get(f"/messaging/stats/{tenant}")
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["tenantId"] == tenant
    assert stats["total"] == 2
    assert stats["byProvider"] == by_provider
    assert stats["byChannel"] == by_channel
    assert sum(stats["byStatus"].values()) == 2


# Failover and provider switches, each on a daemon of its own.


def test_twilio_failing_past_max_attempts_fails_over_to_meta(tmp_path: Path) -> None:
    case = SENDS["tableflow-whatsapp-twilio"]
    with running_world(tmp_path) as world:
        world.twilio.fail_next(status=503, times=MAX_ATTEMPTS + 1)
        message_id = world.send(case)
        message = world.settled(TABLEFLOW, message_id)
        assert message["status"] == "sent", message
        assert message["provider"] == "meta"
        assert [(a["provider"], a["outcome"], a["httpStatus"]) for a in message["attempts"]] == [
            *[("twilio", "retryable_error", 503)] * MAX_ATTEMPTS,
            ("meta", "success", 200),
        ]
        # Twilio got exactly maxAttempts calls; Meta carried the message, intact and valid.
        assert len(world.twilio.requests) == MAX_ATTEMPTS
        for request in world.twilio.requests:
            validate_request("twilio", request)
        (sent,) = world.meta.messages
        assert sent.body == case.body["body"]
        assert sent.phone_number_id == TF_META_PHONE_ID
        assert message["providerMessageId"] == sent.id
        (request,) = world.meta.requests
        validate_meta_request(request)
        assert request.headers["authorization"] == f"Bearer {ENV['TABLEFLOW_META_TOKEN']}"

        failover = {
            "tenant": TABLEFLOW,
            "channel": "whatsapp",
            "from_provider": "twilio",
            "to_provider": "meta",
        }
        assert metric_value(world, "pipecore_failovers_total", **failover) == 1.0
        # Meta's callbacks for a message Meta carried land on the channel's Meta route.
        meta_case = Send(TABLEFLOW, "whatsapp", "meta", case.body, "read")
        for callback in delivery_callbacks(world, meta_case, message):
            r = world.call_back(callback.url, callback.headers, callback.body)
            assert r.status_code == 200, r.text
        assert world.message(TABLEFLOW, message_id)["status"] == "read"
        with world.client(KEYS[TABLEFLOW]) as client:
            stats = client.get(f"/messaging/stats/{TABLEFLOW}").json()
        assert stats["byProvider"] == {"meta": 1}


def _set_provider(
    world: World, tenant: str, channel: str, provider: str, credentials: dict[str, str]
) -> dict[str, Any]:
    body = {
        "tenantId": tenant,
        "channel": channel,
        "provider": provider,
        "credentials": credentials,
        "isActive": True,
    }
    # A tenant's own key may not change configuration.
    with world.client(KEYS[tenant]) as client:
        assert client.post("/messaging/config/provider", json=body).status_code == 403
    with world.client(ADMIN_KEY) as client:
        r = client.post("/messaging/config/provider", json=body)
    assert r.status_code == 200, r.text
    provider_secrets = {
        "meta": ("accessToken", "verifyToken", "appSecret"),
        "resend": ("apiKey", "webhookSecret"),
    }[provider]
    for name in provider_secrets:
        assert credentials[name] not in r.text, f"{name} shown whole"
    return r.json()  # type: ignore[no-any-return]


def test_two_provider_switches_apply_at_once_persist_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    tf_meta = {
        "accessToken": ENV["TABLEFLOW_META_TOKEN"],
        "phoneNumberId": TF_META_PHONE_ID,
        "verifyToken": ENV["TABLEFLOW_META_VERIFY_TOKEN"],
        "appSecret": ENV["TABLEFLOW_META_APP_SECRET"],
    }
    roe_resend = {
        "apiKey": ROE_RESEND_KEY,
        "fromEmail": FROM_EMAIL[ROE],
        "webhookSecret": ROE_RESEND_WEBHOOK_SECRET,
    }
    tf_case = Send(TABLEFLOW, "whatsapp", "meta", SENDS["tableflow-whatsapp-twilio"].body, "read")
    roe_case = Send(ROE, "email", "resend", SENDS["roe-email-sendgrid"].body, "delivered")

    with running_world(tmp_path) as world:
        # TableFlow whatsapp: twilio -> meta (the same Meta account as its fallback).
        view = _set_provider(world, TABLEFLOW, "whatsapp", "meta", tf_meta)
        whatsapp = view["channels"]["whatsapp"]
        assert whatsapp["provider"] == "meta"
        assert whatsapp["isActive"] is True
        assert whatsapp["credentials"] == {
            "accessToken": _mask(tf_meta["accessToken"]),
            "phoneNumberId": TF_META_PHONE_ID,
            "verifyToken": _mask(tf_meta["verifyToken"]),
            "appSecret": _mask(tf_meta["appSecret"]),
        }
        assert view["channels"]["email"]["provider"] == "resend"  # untouched
        # ROE email: sendgrid -> resend.
        view = _set_provider(world, ROE, "email", "resend", roe_resend)
        email = view["channels"]["email"]
        assert email["provider"] == "resend"
        assert email["credentials"] == {
            "apiKey": _mask(ROE_RESEND_KEY),
            "fromEmail": FROM_EMAIL[ROE],
            "webhookSecret": _mask(ROE_RESEND_WEBHOOK_SECRET),
        }
        assert view["channels"]["sms"]["provider"] == "twilio"  # untouched

        # The next sends go to the new providers, with no restart; the old ones get nothing.
        first = {"tf": world.send(tf_case), "roe": world.send(roe_case)}
        for tenant, key, case in ((TABLEFLOW, "tf", tf_case), (ROE, "roe", roe_case)):
            message = world.settled(tenant, first[key])
            assert message["status"] == "sent", message
            assert message["provider"] == case.provider
            check_provider_request(world, case, first[key], message["providerMessageId"])
        assert world.twilio.requests == []
        assert world.sendgrid.requests == []
        # ROE's Resend webhook now verifies with the secret that came with the switch.
        roe_message = world.message(ROE, first["roe"])
        for callback in delivery_callbacks(world, roe_case, roe_message):
            r = world.call_back(callback.url, callback.headers, callback.body)
            assert r.status_code == 200, r.text
        assert world.message(ROE, first["roe"])["status"] == "delivered"

        # The tenant files were rewritten (0600); secrets that came from the environment are
        # still ${ENV} references, and no resolved environment secret was written out.
        tenants = world.config.path / "tenants"
        tf_text = (tenants / f"{TABLEFLOW}.yaml").read_text(encoding="utf-8")
        roe_text = (tenants / f"{ROE}.yaml").read_text(encoding="utf-8")
        for tenant in (TABLEFLOW, ROE):
            mode = stat.S_IMODE((tenants / f"{tenant}.yaml").stat().st_mode)
            assert mode == 0o600, f"{tenant}.yaml has mode {oct(mode)}"
        tf_file = yaml.safe_load(tf_text)
        roe_file = yaml.safe_load(roe_text)
        assert tf_file["apiKeys"] == ["${TABLEFLOW_API_KEY}"]
        assert tf_file["channels"]["whatsapp"]["provider"] == "meta"
        assert tf_file["channels"]["email"]["credentials"]["apiKey"] == "${TABLEFLOW_RESEND_KEY}"
        assert (
            tf_file["channels"]["email"]["credentials"]["webhookSecret"]
            == "${TABLEFLOW_RESEND_WEBHOOK_SECRET}"
        )
        assert roe_file["apiKeys"] == ["${ROE_API_KEY}"]
        assert roe_file["channels"]["email"]["provider"] == "resend"
        assert roe_file["channels"]["email"]["credentials"] == roe_resend  # sent, not from env
        assert roe_file["channels"]["sms"]["credentials"]["authToken"] == "${ROE_TWILIO_TOKEN}"
        # The Meta secrets sent to TableFlow are the values that the channel's own
        # ${TABLEFLOW_META_*} references (on its Meta fallback) resolve to: they stay references.
        assert tf_file["channels"]["whatsapp"]["credentials"] == {
            "accessToken": "${TABLEFLOW_META_TOKEN}",
            "phoneNumberId": TF_META_PHONE_ID,
            "verifyToken": "${TABLEFLOW_META_VERIFY_TOKEN}",
            "appSecret": "${TABLEFLOW_META_APP_SECRET}",
        }, (
            "the switch to meta wrote the resolved ${TABLEFLOW_META_*} secrets into the tenant "
            "file instead of keeping the references its Meta fallback holds"
        )
        for name, value in ENV.items():
            if name != "PIPECORE_ADMIN_KEY":
                assert value not in tf_text and value not in roe_text, f"{name} written out"

        # SIGTERM, exit 0, start again: the switches survived.
        restart(world, tmp_path)
        with world.client(ADMIN_KEY) as client:
            tf_view = client.get(f"/messaging/config/{TABLEFLOW}").json()
            roe_view = client.get(f"/messaging/config/{ROE}").json()
        assert tf_view["channels"]["whatsapp"]["provider"] == "meta"
        assert roe_view["channels"]["email"]["provider"] == "resend"
        assert roe_view["channels"]["email"]["credentials"]["apiKey"] == _mask(ROE_RESEND_KEY)
        for key, tenant in (("tf", TABLEFLOW), ("roe", ROE)):
            assert world.message(tenant, first[key])["status"] in ("sent", "delivered")

        again = {"tf": world.send(tf_case), "roe": world.send(roe_case)}
        for key, tenant, provider in (("tf", TABLEFLOW, "meta"), ("roe", ROE, "resend")):
            message = world.settled(tenant, again[key])
            assert message["status"] == "sent", message
            assert message["provider"] == provider
        assert len(world.meta.requests) == 2
        assert len(world.resend.requests) == 2
        for request in world.meta.requests:
            validate_meta_request(request)
        for request in world.resend.requests:
            validate_request("resend", request)
            assert request.headers["authorization"] == f"Bearer {ROE_RESEND_KEY}"
        assert {r.headers["idempotency-key"] for r in world.resend.requests} == {
            first["roe"],
            again["roe"],
        }
        assert world.twilio.requests == []
        assert world.sendgrid.requests == []

        # No full secret in any response above or in the daemon's logs.
        logs = (tmp_path / "daemon-0.log").read_text() + (tmp_path / "daemon-1.log").read_text()
        for name, value in {**ENV, "ROE_RESEND_KEY": ROE_RESEND_KEY}.items():
            assert value not in logs, f"{name} appears in the daemon's log"
