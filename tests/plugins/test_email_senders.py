"""Both email providers refuse, when a message is accepted, a send's from outside the tenant's
domain (each plugin's check_message, through pipecored's check_sender_domain)."""

from __future__ import annotations

import pytest
from pipecored_resend import ResendProvider
from pipecored_sendgrid import SendGridProvider

from pipecored import MessageRejected, Provider
from tests.plugins import support


@pytest.mark.parametrize(
    ("provider", "from_email"),
    [
        pytest.param(ResendProvider(), "noreply@tableflow.com", id="resend"),
        pytest.param(SendGridProvider(), "TableFlow <noreply@tableflow.com>", id="sendgrid"),
    ],
)
@pytest.mark.parametrize("sender", support.SENDERS_OUTSIDE_THE_DOMAIN)
def test_a_from_outside_the_tenant_domain_is_refused(
    provider: Provider, from_email: str, sender: str
) -> None:
    message = support.email_message("msg_01HZYFROM", sender=sender)
    with pytest.raises(MessageRejected) as caught:
        provider.check_message(message, {"apiKey": "key_0123456789", "fromEmail": from_email})
    assert caught.value.field == "from"
    assert caught.value.message == "must be an address at tableflow.com"
