"""A loopback stand-in for Twilio's Messages API, and signed Twilio webhooks for tests.

:class:`FakeTwilio` answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` like Twilio
does: 201 with a Message resource (a fresh ``SM...`` sid) for a valid request, Twilio's error
JSON otherwise, and whatever a test scripts with :meth:`FakeTwilio.fail_next`. The helpers below
build the status callbacks and incoming-message webhooks Twilio POSTs, signed with Twilio's own
``RequestValidator``, so that end-to-end tests can send them to a running daemon.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.responses import Response
from twilio.request_validator import RequestValidator

from pipecored.testing import RecordedRequest, Reply, ScriptedFake, SignedWebhook
from tests.fakes.specs import provider_check

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account_sid>[^/]+)/Messages\.json$")

# Texts Twilio answers with, for fail_next() calls that give only a code.
ERROR_MESSAGES: Mapping[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21614: "'To' number is not a valid mobile number",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. If you are"
        " using WhatsApp, please use a Message Template."
    ),
    63038: "Account exceeded the daily messages limit",
}


def twilio_error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message if message is not None else ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def error_reply(
    status: int,
    *,
    code: int | None = None,
    message: str | None = None,
    retry_after: float | str | None = None,
) -> Reply:
    """Twilio's error JSON with ``status`` (the Twilio code defaults by status)."""
    twilio_code = code if code is not None else {429: 20429, 503: 20503}.get(status, 20500)
    body = json.dumps(twilio_error(status, twilio_code, message)).encode("utf-8")
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return Reply(status, body, headers, content_type=None)


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def account_sid() -> str:
    """A realistic Account SID (Twilio's OpenAPI document checks the pattern)."""
    return new_sid("AC")


@dataclass(frozen=True)
class SentSms:
    """One message the fake accepted."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    form: Mapping[str, str]


def _json(status: int, payload: Any) -> Response:
    return Response(
        json.dumps(payload).encode("utf-8"), status_code=status, media_type="application/json"
    )


class FakeTwilio(ScriptedFake):
    """Twilio's Messages API on 127.0.0.1.

    ``accounts`` maps each Account SID to its Auth Token; without it any Basic credentials whose
    user is the Account SID in the path are accepted. Every request is checked against Twilio's
    OpenAPI document as it arrives.
    """

    def __init__(self, accounts: Mapping[str, str] | None = None) -> None:
        super().__init__(check=provider_check("twilio"))
        self.accounts = dict(accounts or {})
        self.messages: list[SentSms] = []

    def reset(self) -> None:
        super().reset()
        self.messages.clear()

    def fail_next(
        self,
        *,
        status: int = 400,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with Twilio's error JSON (code defaults by status)."""
        reply = error_reply(status, code=code, message=message, retry_after=retry_after)
        self.script_next(reply, times=times)

    def status_callback(
        self, sent: SentSms, status: str, *, error_code: str | None = None
    ) -> SignedWebhook:
        """The callback Twilio would POST to ``sent.status_callback`` (needs ``accounts``)."""
        if sent.status_callback is None:
            raise ValueError("the message was sent without a StatusCallback")
        return sign_form(
            sent.status_callback,
            self.accounts[sent.account_sid],
            status_callback_params(
                message_sid=sent.sid,
                status=status,
                account_sid=sent.account_sid,
                to=sent.to,
                from_=sent.from_ or "",
                error_code=error_code,
            ),
        )

    def _authenticated(self, request: RecordedRequest, account: str) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except ValueError:
            return False
        if user != account:
            return False
        return not self.accounts or self.accounts.get(account) == password

    def default_answer(self, request: RecordedRequest) -> Response:
        match = MESSAGES_PATH.match(request.path)
        if match is None or request.method != "POST":
            message = f"The requested resource {request.path} was not found"
            return _json(404, twilio_error(404, 20404, message))
        account = match["account_sid"]
        if not self._authenticated(request, account):
            return _json(401, twilio_error(401, 20003))
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8")).items()}
        if not form.get("To"):
            return _json(400, twilio_error(400, 21604))
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _json(400, twilio_error(400, 21603))
        # as Twilio: a message needs a Body, media or a Content template
        if not form.get("Body") and not form.get("MediaUrl") and not form.get("ContentSid"):
            return _json(400, twilio_error(400, 21602))
        sent = SentSms(
            sid=new_sid("SM"),
            account_sid=account,
            to=form["To"],
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form.get("Body", ""),
            status_callback=form.get("StatusCallback"),
            form=form,
        )
        self.messages.append(sent)
        now = format_datetime(datetime.now(UTC))
        uri = f"/2010-04-01/Accounts/{account}/Messages/{sent.sid}"
        return _json(
            201,
            {
                "account_sid": account,
                "api_version": "2010-04-01",
                "body": sent.body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sent.from_,
                "messaging_service_sid": sent.messaging_service_sid,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sent.sid,
                "status": "accepted" if sent.messaging_service_sid else "queued",
                "subresource_uris": {"media": f"{uri}/Media.json"},
                "to": sent.to,
                "uri": f"{uri}.json",
            },
        )


# Webhooks Twilio sends.


def sign_form(url: str, auth_token: str, params: Mapping[str, str]) -> SignedWebhook:
    """A form-encoded POST to ``url``, signed by Twilio's ``RequestValidator``."""
    signature = RequestValidator(auth_token).compute_signature(url, dict(params))
    return SignedWebhook(
        method="POST",
        url=url,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature,
        },
        body=urlencode(params).encode("ascii"),
    )


def sign_json(url: str, auth_token: str, payload: Mapping[str, Any] | bytes) -> SignedWebhook:
    """A JSON POST: ``bodySHA256`` joins the URL's query, and the signature covers the URL alone."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    validator = RequestValidator(auth_token)
    digest = validator.compute_hash(body.decode("utf-8"))
    signed_url = f"{url}{'&' if '?' in url else '?'}{urlencode({'bodySHA256': digest})}"
    return SignedWebhook(
        method="POST",
        url=signed_url,
        headers={
            "content-type": "application/json",
            "x-twilio-signature": validator.compute_signature(signed_url, {}),
        },
        body=body,
    )


def _channel_address(channel: str, address: str) -> str:
    if channel == "whatsapp" and not address.startswith("whatsapp:"):
        return "whatsapp:" + address
    return address


def status_callback_params(
    *,
    message_sid: str,
    status: str,
    account_sid: str,
    to: str,
    from_: str,
    error_code: str | None = None,
    error_message: str | None = None,
    channel: str = "sms",
) -> dict[str, str]:
    """The parameters of a status callback, as Twilio sends them."""
    params = {
        "SmsSid": message_sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": _channel_address(channel, to),
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": _channel_address(channel, from_),
        "ApiVersion": "2010-04-01",
    }
    if channel == "whatsapp":
        params["ChannelToAddress"] = to.removeprefix("whatsapp:")
    if error_code is not None:
        params["ErrorCode"] = error_code
    if error_message is not None:
        params["ErrorMessage"] = error_message
    return params


def inbound_params(
    *,
    body: str,
    from_: str,
    to: str,
    account_sid: str,
    channel: str = "sms",
    message_sid: str | None = None,
) -> dict[str, str]:
    """The parameters of an incoming message, as Twilio sends them."""
    sid = message_sid or new_sid("SM")
    params = {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": _channel_address(channel, to),
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": _channel_address(channel, from_),
        "ApiVersion": "2010-04-01",
    }
    if channel == "whatsapp":
        params["ProfileName"] = "Cliente"
        params["WaId"] = from_.removeprefix("whatsapp:").removeprefix("+")
    return params
