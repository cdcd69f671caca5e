"""Templates, media and attachments through a real daemon and the seed's tenants (SPEC
section 7): the confirmation over Twilio as its Content template and, when Twilio fails, over
Meta as the same logical template; a document to Meta, an MMS image to Twilio and a PDF to
Resend and SendGrid, each in the provider's own format; outside the 24-hour window, Meta's and
Twilio's refusals are ``errorCode: template_required``. Every request is checked against the
provider's own OpenAPI document."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml

from tests.conftest import wait_until
from tests.e2e.test_seed_scenario import GENDA, KEYS, MAX_ATTEMPTS, ROE, TABLEFLOW, running_world
from tests.fakes.meta import validate_meta_request
from tests.fakes.specs import validate_request
from tests.fakes.twilio import FakeTwilio

CONTENT_SID = "HXb5b62575e6e4ff6129ad7c8efe1f983e"
TEMPLATES = {
    "order_confirmation": {
        "es": {
            "twilio": {"contentSid": CONTENT_SID},
            "meta": {"name": "order_confirmation", "language": "es"},
            "text": "Hola {{1}}, tu pedido está confirmado para las {{2}}.",
        }
    }
}
SEND = {
    "to": "+34600111222",
    "template": {
        "name": "order_confirmation",
        "language": "es",
        "variables": {"1": "Begoña", "2": "20:30"},
    },
}


@pytest.mark.parametrize(
    "twilio_fails",
    [
        pytest.param(
            lambda fake: fake.fail_next(status=503, times=MAX_ATTEMPTS + 1), id="503-past-attempts"
        ),
        # Twilio's "Authenticate": the tenant's credentials are no good, the fallback goes at once
        pytest.param(
            lambda fake: fake.fail_next(status=401, code=20003), id="unavailable-credentials"
        ),
    ],
)
def test_the_confirmation_goes_as_a_template_and_keeps_it_through_a_failover(
    tmp_path: Path, twilio_fails: Callable[[FakeTwilio], None]
) -> None:
    with running_world(tmp_path) as world:
        path = world.config.path / "tenants" / f"{TABLEFLOW}.yaml"
        tenant = yaml.safe_load(path.read_text(encoding="utf-8"))
        tenant["templates"] = TEMPLATES
        path.write_text(yaml.safe_dump(tenant, allow_unicode=True), encoding="utf-8")
        with world.client(KEYS[TABLEFLOW]) as client:
            wait_until(
                lambda: "templates" in client.get(f"/messaging/config/{TABLEFLOW}").json(),
                timeout=20,
            )

            # over Twilio, the channel's provider: its Content template and the variables
            first = client.post("/messaging/send/whatsapp", json=SEND)
            assert first.status_code == 202, first.text
            sent = world.settled(TABLEFLOW, first.json()["id"])
            assert (sent["status"], sent["provider"]) == ("sent", "twilio"), sent
            (request,) = world.twilio.requests
            validate_request("twilio", request)
            form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8")).items()}
            assert form["ContentSid"] == CONTENT_SID
            assert json.loads(form["ContentVariables"]) == {"1": "Begoña", "2": "20:30"}

            # Twilio failing: the same logical template over Meta
            twilio_fails(world.twilio)
            second = client.post("/messaging/send/whatsapp", json=SEND)
            assert second.status_code == 202, second.text
            failed_over = world.settled(TABLEFLOW, second.json()["id"])
        assert (failed_over["status"], failed_over["provider"]) == ("sent", "meta"), failed_over
        (meta_request,) = world.meta.requests
        validate_meta_request(meta_request)
        payload = json.loads(meta_request.body)
        assert payload["type"] == "template"
        assert payload["template"] == {
            "name": "order_confirmation",
            "language": {"policy": "deterministic", "code": "es"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Begoña"},
                        {"type": "text", "text": "20:30"},
                    ],
                }
            ],
        }


PDF = b"%PDF-1.4\n% factura de Genda \xc3\xb1\n"


def test_a_document_an_mms_image_and_a_pdf_attachment_reach_each_provider_in_its_format(
    tmp_path: Path,
) -> None:
    with running_world(tmp_path) as world:
        # Genda's WhatsApp is Meta: a document by link with its caption and file name, then
        # the text, each its own message (the Cloud API carries one file per message)
        with world.client(KEYS[GENDA]) as client:
            doc = client.post(
                "/messaging/send/whatsapp",
                json={
                    "to": "+34600111222",
                    "body": "Tu informe, Begoña 🩺",
                    "media": [
                        {
                            "url": "https://files.example.com/informe.pdf",
                            "filename": "informe-análisis.pdf",
                            "caption": "Informe de análisis",
                        }
                    ],
                },
            )
            assert doc.status_code == 202, doc.text
            sent_doc = world.settled(GENDA, doc.json()["id"])
        for request in world.meta.requests:
            validate_meta_request(request)
        document, text = (json.loads(r.body) for r in world.meta.requests)
        assert (document["type"], document["document"]) == (
            "document",
            {
                "link": "https://files.example.com/informe.pdf",
                "caption": "Informe de análisis",
                "filename": "informe-análisis.pdf",
            },
        )
        assert (text["type"], text["text"]["body"]) == ("text", "Tu informe, Begoña 🩺")
        # the message is the document's: Meta's statuses for it move the message
        assert sent_doc["status"] == "sent"
        assert sent_doc["providerMessageId"] == world.meta.messages[0].id

        # ROE's SMS is Twilio: an MMS image as MediaUrl; ROE's email is SendGrid: a PDF
        with world.client(KEYS[ROE]) as client:
            mms = client.post(
                "/messaging/send/sms",
                json={
                    "to": "+34600111222",
                    "body": "Tu pedido 📦",
                    "media": [{"url": "https://files.example.com/pedido.jpg"}],
                },
            )
            assert mms.status_code == 202, mms.text
            world.settled(ROE, mms.json()["id"])
            mail = client.post(
                "/messaging/send/email",
                json={
                    "to": "ana@example.com",
                    "subject": "Tu factura",
                    "htmlContent": "<p>Adjunta.</p>",
                    "attachments": [
                        {
                            "filename": "factura.pdf",
                            "content": base64.b64encode(PDF).decode(),
                            "contentType": "application/pdf",
                        }
                    ],
                },
            )
            assert mail.status_code == 202, mail.text
            world.settled(ROE, mail.json()["id"])
        # Genda's email is Resend: the same PDF in Resend's format
        with world.client(KEYS[GENDA]) as client:
            mail = client.post(
                "/messaging/send/email",
                json={
                    "to": "ana@example.com",
                    "subject": "Tu factura",
                    "htmlContent": "<p>Adjunta.</p>",
                    "attachments": [
                        {
                            "filename": "factura.pdf",
                            "content": base64.b64encode(PDF).decode(),
                            "contentType": "application/pdf",
                        },
                        {"filename": "indicaciones.pdf", "url": "https://files.example.com/i.pdf"},
                    ],
                },
            )
            assert mail.status_code == 202, mail.text
            assert world.settled(GENDA, mail.json()["id"])["status"] == "sent"
        (resend_request,) = world.resend.requests
        validate_request("resend", resend_request)
        assert json.loads(resend_request.body)["attachments"] == [
            {
                "filename": "factura.pdf",
                "content": base64.b64encode(PDF).decode(),
                "content_type": "application/pdf",
            },
            {"filename": "indicaciones.pdf", "path": "https://files.example.com/i.pdf"},
        ]

        (twilio_request,) = world.twilio.requests
        validate_request("twilio", twilio_request)
        assert parse_qs(twilio_request.body.decode("utf-8"))["MediaUrl"] == [
            "https://files.example.com/pedido.jpg"
        ]
        (sendgrid_request,) = world.sendgrid.requests
        validate_request("sendgrid", sendgrid_request)
        assert json.loads(sendgrid_request.body)["attachments"] == [
            {
                "content": base64.b64encode(PDF).decode(),
                "filename": "factura.pdf",
                "type": "application/pdf",
                "disposition": "attachment",
            }
        ]


@pytest.mark.parametrize(
    ("tenant", "refuse"),
    [
        pytest.param(
            TABLEFLOW, lambda world: world.twilio.fail_next(status=400, code=63016), id="twilio"
        ),
        pytest.param(GENDA, lambda world: world.meta.fail_next(status=400, code=131047), id="meta"),
    ],
)
def test_free_text_outside_the_24_hour_window_fails_as_template_required(
    tmp_path: Path, tenant: str, refuse: Callable[[Any], None]
) -> None:
    with running_world(tmp_path) as world:
        refuse(world)
        with world.client(KEYS[tenant]) as client:
            sent = client.post(
                "/messaging/send/whatsapp", json={"to": "+34600111222", "body": "¿Vienes hoy?"}
            )
            assert sent.status_code == 202, sent.text
            failed = world.settled(tenant, sent.json()["id"])
        # final: a fallback would meet the same window, and only a template can open it
        assert (failed["status"], failed["errorCode"]) == ("failed", "template_required"), failed
        assert len(world.twilio.requests) + len(world.meta.requests) == 1
