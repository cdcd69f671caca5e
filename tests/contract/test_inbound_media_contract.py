"""The store keeps what an inbound message's media are (SPEC section 7), for every store."""

from __future__ import annotations

from pipecored.provider import InboundMedia, InboundMessage
from pipecored.store import MessageStore
from tests.contract.store_records import TENANT


async def test_inbound_media_are_kept_with_the_message(store: MessageStore) -> None:
    photo = InboundMedia("image", "image/jpeg", provider_media_id="1055", caption="¿Así? 📷")
    note = InboundMedia("audio", "audio/ogg", url="https://media.example/voice.ogg")
    message_id, created = await store.add_inbound(
        TENANT,
        "whatsapp",
        "meta",
        InboundMessage("+34600999888", "+34911222333", "", media=(photo, note)),
    )
    assert created
    record = await store.get(message_id)
    assert record is not None
    assert record.payload["media"] == [
        {
            "kind": "image",
            "mimeType": "image/jpeg",
            "providerMediaId": "1055",
            "caption": "¿Así? 📷",
        },
        {"kind": "audio", "mimeType": "audio/ogg", "url": "https://media.example/voice.ogg"},
    ]
