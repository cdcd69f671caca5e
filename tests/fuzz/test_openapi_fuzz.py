"""Schemathesis against the daemon's own OpenAPI document, on a real ``pipecored serve``.

Every operation, once with a tenant key and once with the admin key: never a 5xx; every
status code, content type and body as the document declares them; every error in the SPEC's
shape.

The schemas are loaded when the module is imported, from the same ``document()`` the daemon
serves, for the same channels (the standard ones and the example plugin's ``chat``;
``test_the_daemon_serves_the_fuzzed_document`` holds the two equal):
``schemathesis.pytest.from_fixture`` would load it from the running daemon instead, but it
reads ``Item._nodeid``, which pytest 9 removed.
"""

from __future__ import annotations

import importlib.util

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from pipecored.api.openapi import document
from pipecored.channels import ChannelSet
from tests.conftest import ADMIN_KEY, EXAMPLE_PLUGIN
from tests.fuzz.conftest import ACME_KEY, TENANTS, FuzzDaemon, error_shape_problem

# Schema-valid requests these operations may still refuse with 422, for rules that depend on
# the running configuration and so cannot be in the document: which provider a tenant's
# channel uses and what it accepts (an email body to /send/sms matches the send schema's
# anyOf), the names of the loaded providers and their required credentials; a logs, events or
# suppressions cursor, which is opaque (only one the API returned is valid: any other string is
# a 422); and a suppressed address, checked as the channel's addresses are (E.164, email).
_CONFIG = """
headers = {{ Authorization = "Bearer {key}" }}

[[operations]]
include-path = "/messaging/send/{{channel}}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/messaging/logs/{{tenant_id}}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/messaging/events/{{tenant_id}}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/messaging/suppressions/{{tenant_id}}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/messaging/suppressions/{{tenant_id}}/{{channel}}/{{address}}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/messaging/config/provider"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


def _example_plugin_channels() -> ChannelSet:
    """The channels of the daemon under fuzzing: it loads the example plugin (installed by a
    session fixture, after this module is imported), which declares ``chat``. Read from the
    plugin's source under a name of its own, so that the installed copy is not shadowed."""
    source = EXAMPLE_PLUGIN / "pipecored_httpjson" / "__init__.py"
    spec = importlib.util.spec_from_file_location("_httpjson_for_the_document", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return ChannelSet.of({"httpjson": module.HttpJsonProvider()})


CHANNELS = _example_plugin_channels()


def _schema(key: str) -> schemathesis.BaseSchema:
    # The key as a configured header: schemathesis then treats it as the caller's own
    # (explicit) credentials, generates no negative Authorization values over it, and its
    # ignored_auth check probes that the operation refuses the request without it.
    config = SchemathesisConfig.from_str(_CONFIG.format(key=key))
    return schemathesis.openapi.from_dict(document(CHANNELS), config=config)


tenant_key = _schema(ACME_KEY)
admin_key = _schema(ADMIN_KEY)


def test_the_daemon_serves_the_fuzzed_document(fuzz_daemon: FuzzDaemon) -> None:
    response = httpx.get(f"{fuzz_daemon.url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == tenant_key.raw_schema


@schemathesis.pytest.parametrize(tenant_key=tenant_key, admin_key=admin_key)
# Random tenant ids, message ids and provider names are nearly all 404s and 422s; a known one,
# most of the time, takes the request on into the handler (and the config writer).
@tenant_key.given(
    tenant=st.sampled_from([None, *TENANTS]),
    message=st.sampled_from([None, 0, 1]),
    provider=st.sampled_from([None, "console", "httpjson"]),
)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api(
    case: schemathesis.Case,
    fuzz_daemon: FuzzDaemon,
    tenant: str | None,
    message: int | None,
    provider: str | None,
) -> None:
    path = case.path_parameters if case.path_parameters is not None else {}
    if tenant is not None:
        if "tenant_id" in path:
            path["tenant_id"] = tenant
        if case.query and "tenant_id" in case.query:
            case.query["tenant_id"] = tenant
    if message is not None and "message_id" in path:
        path["message_id"] = fuzz_daemon.message_ids[message]
    if provider is not None and isinstance(case.body, dict) and "provider" in case.body:
        case.body["provider"] = provider
    # The configured key again, as the call's own headers: a case from a phase that does not
    # carry the configured headers as overrides would otherwise have its key judged as
    # generated (and so presumably invalid) by ignored_auth.
    headers = case.operation.schema.config.headers_for(operation=case.operation)
    response = case.call_and_validate(base_url=fuzz_daemon.url, headers=headers, timeout=10)
    if response.status_code >= 400:
        problem = error_shape_problem(
            response.status_code, response.headers.get("content-type", [""])[0], response.content
        )
        assert problem is None, problem
