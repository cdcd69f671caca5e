"""Every fake checks every request against its provider's document as it arrives, strictly: a
field the document does not declare (a misspelled optional one, say) is answered 400 and raised
in the test that sent it; the same request spelled right is served."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pipecored import __version__
from pipecored.testing import RequestViolation, ScriptedFake
from tests.fakes.httpjson import HttpJsonGateway
from tests.fakes.meta import TEXT_MESSAGE, FakeMeta
from tests.fakes.resend import FakeResend
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.twilio import FakeTwilio

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
BASIC = base64.b64encode(f"{ACCOUNT_SID}:token".encode()).decode()
BEARER = {"authorization": "Bearer key_0123456789", "user-agent": f"pipecored/{__version__}"}

TWILIO_FORM = {"To": "+34600111222", "From": "+14155550123", "Body": "Hola"}
RESEND_EMAIL = {"from": "a@tableflow.com", "to": ["b@example.com"], "subject": "s", "html": "x"}
SENDGRID_MAIL = {
    "personalizations": [{"to": [{"email": "b@example.com"}]}],
    "from": {"email": "a@tableflow.com"},
    "subject": "s",
    "content": [{"type": "text/html", "value": "x"}],
}
META_TEXT = dict(TEXT_MESSAGE)
HTTPJSON_SMS = {"id": "m1", "channel": "sms", "to": ["+34600111222"], "from": None, "body": "x"}


def twilio(fake: ScriptedFake, form: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{fake.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data=form,
        headers={"authorization": f"Basic {BASIC}"},
    )


def resend(fake: ScriptedFake, email: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{fake.url}/emails", json=email, headers=BEARER)


def sendgrid(fake: ScriptedFake, mail: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{fake.url}/v3/mail/send", json=mail, headers=BEARER)


def meta(fake: ScriptedFake, message: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{fake.url}/v23.0/106540352242922/messages", json=message, headers=BEARER)


def httpjson(fake: ScriptedFake, message: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{fake.url}/messages", json=message, headers=BEARER)


def with_personalization(**fields: Any) -> dict[str, Any]:
    return {
        **SENDGRID_MAIL,
        "personalizations": [{**SENDGRID_MAIL["personalizations"][0], **fields}],
    }


Send = Callable[[ScriptedFake, Any], httpx.Response]


@pytest.mark.parametrize(
    ("make_fake", "send", "good", "misspelled", "field"),
    [
        pytest.param(
            FakeTwilio,
            twilio,
            TWILIO_FORM,
            {**TWILIO_FORM, "StatusCalback": "https://x.example/cb"},
            "StatusCalback",
            id="twilio-form-field",
        ),
        pytest.param(
            FakeResend,
            resend,
            RESEND_EMAIL,
            {**RESEND_EMAIL, "replyTo": ["c@example.com"]},
            "replyTo",
            id="resend",
        ),
        pytest.param(
            FakeResend,
            resend,
            RESEND_EMAIL,
            {**RESEND_EMAIL, "tags": [{"name": "a", "value": "b", "colour": "red"}]},
            "colour",
            id="resend-nested",
        ),
        pytest.param(
            FakeSendGrid,
            sendgrid,
            SENDGRID_MAIL,
            {**SENDGRID_MAIL, "reply_too": {"email": "c@example.com"}},
            "reply_too",
            id="sendgrid",
        ),
        pytest.param(
            FakeSendGrid,
            sendgrid,
            SENDGRID_MAIL,
            with_personalization(custom_arg={"a": "b"}),
            "custom_arg",
            id="sendgrid-personalization",
        ),
        pytest.param(
            FakeMeta,
            meta,
            META_TEXT,
            {**META_TEXT, "text": {"body": "Hola", "preview": False}},
            "preview",
            id="meta-text",
        ),
        pytest.param(
            HttpJsonGateway,
            httpjson,
            HTTPJSON_SMS,
            {**HTTPJSON_SMS, "priority": "high"},
            "priority",
            id="httpjson",
        ),
    ],
)
def test_a_field_the_document_does_not_declare_is_refused_on_arrival(
    make_fake: Callable[[], ScriptedFake],
    send: Send,
    good: Any,
    misspelled: Any,
    field: str,
) -> None:
    fake = make_fake().start()
    try:
        served = send(fake, good)
        assert served.is_success, served.text
        fake.raise_violations()

        refused = send(fake, misspelled)

        assert refused.status_code == 400
        assert field in refused.json()["message"]
        with pytest.raises(RequestViolation, match=field):
            fake.raise_violations()
    finally:
        fake.stop()


def test_a_request_to_a_path_the_document_lacks_is_refused() -> None:
    with FakeTwilio() as fake:
        answer = httpx.post(f"{fake.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Mesages.json")
        assert answer.status_code == 400
        with pytest.raises(RequestViolation, match=r"Mesages\.json"):
            fake.raise_violations()
