"""Templates, media and attachments through a real daemon and the seed's tenants (SPEC
section 7): the confirmation over Twilio as its Content template and, when Twilio fails, over
Meta as the same logical template; a document to Meta, an MMS image to Twilio and a PDF to
SendGrid, each in the provider's own format. Every request is checked against the provider's
own OpenAPI document."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

import yaml

from tests.conftest import wait_until
from tests.e2e.test_seed_scenario import GENDA, KEYS, MAX_ATTEMPTS, ROE, TABLEFLOW, running_world
from tests.fakes.specs import validate_request

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


def test_the_confirmation_goes_as_a_template_and_keeps_it_through_a_failover(
    tmp_path: Path,
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

            # Twilio failing past its attempts: the same logical template over Meta
            world.twilio.fail_next(status=503, times=MAX_ATTEMPTS + 1)
            second = client.post("/messaging/send/whatsapp", json=SEND)
            assert second.status_code == 202, second.text
            failed_over = world.settled(TABLEFLOW, second.json()["id"])
        assert (failed_over["status"], failed_over["provider"]) == ("sent", "meta"), failed_over
        (meta_request,) = world.meta.requests
        validate_request("meta", meta_request)
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
        # Genda's WhatsApp is Meta: a document by link
        with world.client(KEYS[GENDA]) as client:
            doc = client.post(
                "/messaging/send/whatsapp",
                json={
                    "to": "+34600111222",
                    "body": "Tu informe",
                    "media": [{"url": "https://files.example.com/informe.pdf"}],
                },
            )
            assert doc.status_code == 202, doc.text
            world.settled(GENDA, doc.json()["id"])
        (meta_request,) = world.meta.requests
        validate_request("meta", meta_request)
        assert json.loads(meta_request.body)["document"] == {
            "link": "https://files.example.com/informe.pdf"
        }

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
