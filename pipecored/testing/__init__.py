"""pipecored.testing: test a provider plugin the way pipecored tests its own.

- A fake provider server kit: :class:`ScriptedFake` (subclass it with your provider's answer;
  tests script errors, slow answers and 2xx answers missing an id) on :class:`FakeServer`, a
  recording HTTP server on 127.0.0.1; :class:`FlakyServer` drops connections mid-answer;
  :class:`SignedWebhook` is a callback to hand to ``handle_webhook``.
- Request checks run by the fake on every request as it arrives, strict about unknown fields:
  :class:`OpenAPICheck` (your provider's OpenAPI document) and :class:`JsonSchemaCheck` (JSON
  Schemas of your own). A request that does not conform is answered 400 and raised, as a
  :class:`RequestViolation`, in the test that made the plugin send it.
- :class:`ProviderContract`: the cases every provider must pass (timeouts, a closed port,
  classification of error answers, Retry-After, secrets echoed in errors, wrong credentials,
  answers without an id), run against your plugin by subclassing it; :class:`WebhookContract`,
  the same for ``handle_webhook`` (signatures checked first, and every way of failing them).

Install with ``pip install 'pipecored[testing]'``. See "Testing your plugin" in
``docs/plugins.md``.
"""

from __future__ import annotations

import pytest

# The contract's asserts explain themselves in pytest's reports only when rewritten.
pytest.register_assert_rewrite("pipecored.testing.contract", "pipecored.testing.webhook_contract")

from pipecored.testing.checks import (  # noqa: E402
    JsonSchemaCheck,
    OpenAPICheck,
    load_document,
    strict_schema,
)
from pipecored.testing.clients import CLIENT_KINDS, ClientKind, http_client  # noqa: E402
from pipecored.testing.contract import ProviderContract, private_imports  # noqa: E402
from pipecored.testing.flaky import FlakyServer  # noqa: E402
from pipecored.testing.ports import closed_port_url  # noqa: E402
from pipecored.testing.scripted import Reply, ScriptedFake  # noqa: E402
from pipecored.testing.server import FakeServer, RecordedRequest, RequestCheck  # noqa: E402
from pipecored.testing.violations import RequestViolation  # noqa: E402
from pipecored.testing.webhook_contract import WebhookContract  # noqa: E402
from pipecored.testing.webhooks import SignedWebhook  # noqa: E402

__all__ = [
    "CLIENT_KINDS",
    "ClientKind",
    "FakeServer",
    "FlakyServer",
    "JsonSchemaCheck",
    "OpenAPICheck",
    "ProviderContract",
    "RecordedRequest",
    "Reply",
    "RequestCheck",
    "RequestViolation",
    "ScriptedFake",
    "SignedWebhook",
    "WebhookContract",
    "closed_port_url",
    "http_client",
    "load_document",
    "private_imports",
    "strict_schema",
]
