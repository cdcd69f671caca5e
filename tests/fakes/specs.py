"""Check a request a plugin sent against the provider's own OpenAPI document.

The documents live in ``../shared/provider-specs/`` beside the repository (or where
``PIPECORE_PROVIDER_SPECS`` points). The fake servers listen on 127.0.0.1; the request is checked
as if it had gone to the provider's documented server, with the same path, query, headers and body.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tests.fakes.server import RecordedRequest

SPEC_FILES = {
    "twilio": "twilio_api_v2010.json",
    "sendgrid": "sendgrid_mail_v3.json",
    "resend": "resend.yaml",
    "meta": "meta_whatsapp_business_messaging_v23.0.yaml",
}


def specs_dir() -> Path:
    env = os.environ.get("PIPECORE_PROVIDER_SPECS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "provider-specs"


@functools.cache
def load_spec(provider: str) -> dict[str, Any]:
    path = specs_dir() / SPEC_FILES[provider]
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".json":
            return json.load(f)  # type: ignore[no-any-return]
        # The C loader: Meta's document is 1 MB of YAML (about 4 s with the pure-Python one).
        return yaml.load(f, Loader=yaml.CSafeLoader)  # type: ignore[no-any-return]


@functools.cache
def openapi(provider: str) -> OpenAPI:
    # The documents are the providers' own, unmodified; some are not strictly valid OpenAPI,
    # so the document itself is not validated, only requests against it.
    return OpenAPI.from_dict(load_spec(provider), config=Config(spec_validator_cls=None))


class _SpecRequest:
    """openapi_core's Request protocol over a recorded request."""

    def __init__(self, host_url: str, recorded: RecordedRequest) -> None:
        self.host_url = host_url
        self.path = recorded.path
        self.method = recorded.method.lower()
        self.body = recorded.body
        self.content_type = recorded.headers.get("content-type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(recorded.query),
            header=Headers(list(recorded.headers.items())),
            cookie=ImmutableMultiDict(),
        )
        self.full_url_pattern = host_url + recorded.path


def server_url(provider: str) -> str:
    return str(load_spec(provider)["servers"][0]["url"]).rstrip("/")


def validate_request(
    provider: str, recorded: RecordedRequest, *, host_url: str | None = None
) -> None:
    """Raise openapi_core's validation error when the request does not match the document."""
    openapi(provider).validate_request(_SpecRequest(host_url or server_url(provider), recorded))
