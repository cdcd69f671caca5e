"""The providers' own OpenAPI documents, and the request check each fake runs with them.

The documents live in ``../shared/provider-specs/`` beside the repository (or where
``PIPECORE_PROVIDER_SPECS`` points), unmodified. Every fake checks every request on arrival with
:func:`provider_check` (strict: a field the document does not declare is refused); a test may
also check a recorded request itself with :func:`validate_request`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from pipecored.testing import OpenAPICheck, RecordedRequest, load_document

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
    return load_document(specs_dir() / SPEC_FILES[provider])


@functools.cache
def provider_check(provider: str) -> OpenAPICheck:
    """The strict check of ``provider``'s document, built once per process (Meta's and Twilio's
    documents are megabytes)."""
    return OpenAPICheck(load_spec(provider))


def validate_request(provider: str, recorded: RecordedRequest) -> None:
    """Raise ``RequestViolation`` unless ``provider``'s document allows the request."""
    provider_check(provider)(recorded)
