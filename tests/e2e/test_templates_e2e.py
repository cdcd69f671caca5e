"""The seed's confirmation as a template through a real daemon (SPEC section 7): over Twilio as
its Content template, and, when Twilio fails, over Meta as the same logical template in Meta's
own format; every request checked against the provider's own OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import yaml

from tests.conftest import wait_until
from tests.e2e.test_seed_scenario import KEYS, MAX_ATTEMPTS, TABLEFLOW, running_world
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
