"""Event types and an endpoint's subscription."""

from __future__ import annotations

from pipecored.events.kinds import EVENT_TYPES, STATUS_EVENTS, endpoint_wants, unknown_event_types


def test_the_eleven_types_of_spec_section_8() -> None:
    assert {
        "message.sent",
        "message.delivered",
        "message.read",
        "message.failed",
        "message.canceled",
        "message.failover",
        "message.received",
        "recipient.suppressed",
        "recipient.unsuppressed",
        "provider.down",
        "provider.up",
    } == EVENT_TYPES
    assert set(STATUS_EVENTS.values()) <= EVENT_TYPES


def test_no_list_means_every_event_and_a_list_means_only_those() -> None:
    assert endpoint_wants(None, "provider.up")
    assert endpoint_wants(["message.failed"], "message.failed")
    assert not endpoint_wants(["message.failed"], "message.sent")
    assert not endpoint_wants([], "message.sent")


def test_unknown_names_are_reported_in_order() -> None:
    assert unknown_event_types(["message.sent", "message.bounced", "nope"]) == [
        "message.bounced",
        "nope",
    ]
