"""How an inbound message is stored, the same for every store: its payload (what the log and
its events show) and the reason an opt-out reply leaves on the suppression list."""

from __future__ import annotations

from pipecored.provider import InboundMedia, InboundMessage


def inbound_media_json(media: InboundMedia) -> dict[str, str]:
    """An inbound file as the log shows it (camelCase, what the provider told us)."""
    item = {
        "kind": media.kind,
        "mimeType": media.mime_type,
        "providerMediaId": media.provider_media_id,
        "url": media.url,
        "caption": media.caption,
        "filename": media.filename,
    }
    return {k: v for k, v in item.items() if v is not None}


def inbound_payload(message: InboundMessage) -> dict[str, object]:
    payload: dict[str, object] = {
        "from": message.sender,
        "to": message.recipient,
        "body": message.body,
    }
    if message.subject is not None:
        payload["subject"] = message.subject
    if message.occurred_at is not None:
        payload["occurred_at"] = message.occurred_at.isoformat()
    if message.media:
        payload["media"] = [inbound_media_json(m) for m in message.media]
    return payload


def opt_out_reason(message: InboundMessage) -> str:
    """Why an opt-out reply suppressed its sender: the words it used."""
    return f"replied {message.body.strip()!r}" if message.body else "opt-out keyword"
