"""Channels as plugins declare them, and what a provider is told about its settings."""

from __future__ import annotations

import pytest

from pipecored import Channel, OutboundMessage, Provider, SendContext, SendResult
from pipecored.channels import STANDARD_CHANNELS, ChannelSet
from pipecored.config.model import DaemonConfig
from pipecored.errors import PipecoreError
from pipecored.provider_context import provider_settings

PUSH = Channel("push", "push notifications to a device token", check_address=str.strip)


class _Pusher(Provider):
    name = "pusher"
    channels = frozenset({"push", "fax"})
    declared_channels = (PUSH,)
    default_settings = {"region": "eu", "batch": 10}

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        raise AssertionError("not called")


def test_a_plugin_channel_joins_the_standard_ones_and_an_undeclared_one_is_warned_about() -> None:
    channels = ChannelSet.of({"pusher": _Pusher()})
    assert channels.names == (*(c.name for c in STANDARD_CHANNELS), "push")
    assert channels["push"] is PUSH
    assert channels.warnings == (
        "provider pusher serves 'fax', which no plugin declares as a channel; tenants cannot"
        " configure it",
    )


def test_two_different_declarations_of_one_channel_are_refused() -> None:
    class _Other(_Pusher):
        name = "other"
        declared_channels = (Channel("push", "something else"),)

    with pytest.raises(PipecoreError, match="declares channel 'push' differently"):
        ChannelSet.of({"pusher": _Pusher(), "other": _Other()})


@pytest.mark.parametrize("name", ["Chat", "9lives", "chat-room", "a" * 33, ""])
def test_a_channel_name_outside_the_pattern_is_refused(name: str) -> None:
    with pytest.raises(PipecoreError, match="does not match"):
        Channel(name, "bad")


def test_a_providers_settings_layer_defaults_then_providers_then_plugins() -> None:
    daemon = DaemonConfig.model_validate(
        {
            "providers": {"pusher": {"apiVersion": "v2"}},
            "plugins": {"pusher": {"region": "us", "retries": {"max": 3}}},
        }
    )
    assert provider_settings(daemon, _Pusher()) == {
        "region": "us",
        "batch": 10,
        "apiVersion": "v2",
        "retries": {"max": 3},
    }
