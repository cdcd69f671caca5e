"""The typed outbound message and its stored JSON form.

A send body becomes an :class:`~pipecored.provider.OutboundMessage` once, in the service layer;
the store keeps it as :func:`to_json` writes it and delivery reads it back with
:func:`from_record`. ``to`` and ``from`` live in the message row's own columns (the log shows
them, the store indexes them), so the JSON form does not repeat them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from pipecored.provider import Attachment, Media, OutboundMessage, TemplateRef
from pipecored.store import Lease, MessageRecord, NewMessage

# Fields of OutboundMessage kept in the JSON form, with the empty value left out of it.
_TEXT_FIELDS = ("body", "subject", "html", "text")
_LIST_FIELDS = ("reply_to", "cc", "bcc")
_MAP_FIELDS = ("headers", "tags")


def to_json(message: OutboundMessage) -> dict[str, Any]:
    """The message's stored form: what it carries besides its id, tenant, channel, to and from."""
    data: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        value = getattr(message, name)
        if value is not None:
            data[name] = value
    for name in _LIST_FIELDS:
        if items := getattr(message, name):
            data[name] = list(items)
    for name in _MAP_FIELDS:
        if mapping := getattr(message, name):
            data[name] = dict(mapping)
    if message.template is not None:
        data["template"] = {
            "name": message.template.name,
            "language": message.template.language,
            "variables": dict(message.template.variables),
        }
    if message.media:
        data["media"] = [_without_none(m.url, m.filename, m.caption) for m in message.media]
    if message.attachments:
        data["attachments"] = [
            {
                "filename": a.filename,
                "content": base64.b64encode(a.content).decode() if a.content is not None else None,
                "url": a.url,
                "contentType": a.content_type,
            }
            for a in message.attachments
        ]
    return data


def _without_none(url: str, filename: str | None, caption: str | None) -> dict[str, str]:
    item = {"url": url, "filename": filename, "caption": caption}
    return {k: v for k, v in item.items() if v is not None}


def from_json(
    *,
    message_id: str,
    tenant_id: str,
    channel: str,
    to: str | list[str],
    sender: str | None,
    data: Mapping[str, Any],
) -> OutboundMessage:
    """The inverse of :func:`to_json`. Rows written before ``to`` left the JSON form still carry
    it there; the column is the one source."""
    return OutboundMessage(
        id=message_id,
        tenant_id=tenant_id,
        channel=channel,
        to=(to,) if isinstance(to, str) else tuple(to),
        sender=sender,
        body=data.get("body"),
        subject=data.get("subject"),
        html=data.get("html"),
        text=data.get("text"),
        reply_to=tuple(data.get("reply_to", ())),
        cc=tuple(data.get("cc", ())),
        bcc=tuple(data.get("bcc", ())),
        headers=dict(data.get("headers", {})),
        tags=dict(data.get("tags", {})),
        template=_template(data.get("template")),
        media=tuple(
            Media(m["url"], m.get("filename"), m.get("caption")) for m in data.get("media", ())
        ),
        attachments=tuple(
            Attachment(
                filename=a["filename"],
                content=base64.b64decode(a["content"]) if a.get("content") is not None else None,
                url=a.get("url"),
                content_type=a.get("contentType"),
            )
            for a in data.get("attachments", ())
        ),
    )


def _template(data: Mapping[str, Any] | None) -> TemplateRef | None:
    if data is None:
        return None
    return TemplateRef(data["name"], data["language"], dict(data.get("variables", {})))


def from_record(record: MessageRecord) -> OutboundMessage:
    return from_json(
        message_id=record.id,
        tenant_id=record.tenant_id,
        channel=record.channel,
        to=record.to,
        sender=record.sender,
        data=record.payload,
    )


def new_message(
    message: OutboundMessage,
    *,
    to: str | list[str],
    now: float,
    not_before: float | None = None,
    scheduled: bool = False,
    experiment: str | None = None,
    experiment_arm: str | None = None,
    lease: Lease | None = None,
    suppression_keys: tuple[str, ...] = (),
) -> NewMessage:
    """The store's row for an accepted message; ``to`` as the client wrote it (one address or a
    list), which is what the log shows. ``not_before`` holds it (a sendAt, quiet hours);
    ``scheduled`` shows it as ``scheduled`` until then; with a ``lease`` it is stored claimed;
    refused if any of ``suppression_keys`` is suppressed."""
    return NewMessage(
        id=message.id,
        tenant_id=message.tenant_id,
        channel=message.channel,
        to=to,
        sender=message.sender,
        payload=to_json(message),
        created_at=now,
        not_before=not_before,
        scheduled=scheduled,
        experiment=experiment,
        experiment_arm=experiment_arm,
        lease=lease,
        suppression_keys=suppression_keys,
    )
