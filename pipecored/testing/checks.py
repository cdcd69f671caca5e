"""Request checks a fake runs on every request as it arrives: against the provider's OpenAPI
document (:class:`OpenAPICheck`) or against JSON Schemas of its own (:class:`JsonSchemaCheck`).

Both are strict by default: an object schema that lists its ``properties`` and says nothing of
others refuses them (``additionalProperties: false``), so a misspelled optional field is an error
and not a field the provider silently ignores. :func:`strict_schema` says exactly what changes.

openapi-core and jsonschema come with the ``pipecored[testing]`` extra.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pipecored.testing.server import RecordedRequest
from pipecored.testing.violations import RequestViolation


def load_document(path: Path) -> dict[str, Any]:
    """An OpenAPI document or JSON Schema from a ``.json`` or YAML file."""
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".json":
            return json.load(f)  # type: ignore[no-any-return]
        import yaml

        if yaml.__with_libyaml__:
            # The C loader: a provider's document can be megabytes of YAML (Meta's takes 4 s
            # with the pure-Python one).
            return yaml.load(f, Loader=yaml.CSafeLoader)  # type: ignore[no-any-return]
        return yaml.safe_load(f)  # type: ignore[no-any-return]


def strict_schema(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` (an OpenAPI document or a JSON Schema) in which unknown properties
    are errors.

    - An object schema with ``properties`` and no ``additionalProperties`` gets
      ``additionalProperties: false``, unless it also has ``oneOf``/``anyOf`` (its properties are
      then spread over branches that JSON Schema checks one at a time).
    - ``allOf`` whose branches declare properties is merged into one object schema first (the
      union of the branches' properties and requirements): closing each branch alone would refuse
      every property of the others. Meta's document writes each message type this way.
    - ``then``/``else`` are not closed themselves (they see their parent's object), and ``if``,
      ``not``, ``contains`` and ``propertyNames`` are left as they are (they are conditions).
    """
    strict = copy.deepcopy(dict(document))
    resolve = functools.partial(_resolve, document)
    _close(strict, resolve, under_alternatives=False)
    return strict


def _resolve(document: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported: {ref}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node  # type: ignore[no-any-return]


def _branches(schema: Mapping[str, Any], key: str, resolve: Any) -> Iterator[Mapping[str, Any]]:
    for branch in schema.get(key, ()):
        yield resolve(branch["$ref"]) if isinstance(branch, dict) and "$ref" in branch else branch


def _merged_all_of(schema: dict[str, Any], resolve: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    properties: dict[str, Any] = dict(merged.pop("properties", {}))
    required: list[str] = list(merged.pop("required", []))
    closed = merged.get("additionalProperties") is False
    for raw in _branches(schema, "allOf", resolve):
        branch = copy.deepcopy(dict(raw))
        if "allOf" in branch:
            branch = _merged_all_of(branch, resolve)
        for name, prop in branch.get("properties", {}).items():
            # A property two branches declare must satisfy both.
            properties[name] = {"allOf": [properties[name], prop]} if name in properties else prop
        required.extend(r for r in branch.get("required", ()) if r not in required)
        closed = closed or branch.get("additionalProperties") is False
        for key, value in branch.items():
            if key not in ("properties", "required", "additionalProperties", "$ref"):
                merged.setdefault(key, copy.deepcopy(value))
    merged.update(type="object", properties=properties)
    if required:
        merged["required"] = required
    if closed:
        merged["additionalProperties"] = False
    return merged


def _close(node: Any, resolve: Any, *, under_alternatives: bool) -> None:
    if isinstance(node, list):
        for item in node:
            _close(item, resolve, under_alternatives=False)
        return
    if not isinstance(node, dict):
        return
    if "allOf" in node and any("properties" in b for b in _branches(node, "allOf", resolve)):
        merged = _merged_all_of(node, resolve)
        node.clear()
        node.update(merged)
    alternatives = any(key in node for key in ("oneOf", "anyOf"))
    if (
        isinstance(node.get("properties"), dict)
        and "additionalProperties" not in node
        and not alternatives
        and not under_alternatives
    ):
        node["additionalProperties"] = False
    for key, value in node.items():
        if key in ("oneOf", "anyOf"):
            # Branches of an object that has properties of its own are not closed one by one.
            for branch in value:
                _close(branch, resolve, under_alternatives="properties" in node)
        elif key in ("then", "else"):
            # Checked against the same object as their parent: closing them alone would refuse
            # the parent's properties.
            _close(value, resolve, under_alternatives=True)
        elif key in ("if", "not", "contains", "propertyNames"):
            # Conditions, not descriptions: a closed condition would match other objects.
            continue
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            # A map of names to schemas, not a schema (a property may be called "properties").
            for schema in value.values():
                _close(schema, resolve, under_alternatives=False)
        elif key not in ("example", "examples", "default", "enum", "const"):
            _close(value, resolve, under_alternatives=False)


class _OpenAPIRequest:
    """openapi-core's request protocol over a recorded request, as if sent to ``host_url``."""

    def __init__(self, host_url: str, recorded: RecordedRequest) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

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


def _schema_errors(errors: Iterable[Any]) -> list[str]:
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}" for e in errors]


def _describe(error: BaseException) -> str:
    """What an openapi-core error says, without the repr of the whole value it refused."""
    head = (str(error) or type(error).__name__).split(": Value ", 1)[0]
    cause = error.__cause__
    while cause is not None:
        schema_errors = getattr(cause, "schema_errors", None)
        if schema_errors:
            return "; ".join([head, *_schema_errors(schema_errors)])
        cause = cause.__cause__
    return head


def _path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile(
        "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p) + "$"
    )


class OpenAPICheck:
    """Checks each request against an OpenAPI document: path, method, security, parameters and
    body. The fake listens on loopback; the request is checked as if it had gone to
    ``server_url`` (the document's first server unless given) with the same path, query,
    headers and body.

    ``strict=True`` (the default) refuses properties the document does not declare
    (:func:`strict_schema`). The document is used as given otherwise: providers' documents are
    often not strictly valid OpenAPI, so the document itself is not validated.
    """

    def __init__(
        self,
        document: Mapping[str, Any] | Path,
        *,
        server_url: str | None = None,
        strict: bool = True,
    ) -> None:
        from openapi_core import Config, OpenAPI

        spec = load_document(document) if isinstance(document, Path) else dict(document)
        self.document = strict_schema(spec) if strict else spec
        self.server_url = (server_url or str(spec["servers"][0]["url"])).rstrip("/")
        # None skips validating the document itself (openapi-core checks for it; its annotation
        # leaves it out).
        config = Config(spec_validator_cls=None)  # type: ignore[arg-type]
        self._openapi = OpenAPI.from_dict(self.document, config=config)
        # Longest literal prefix first, so that /emails/batch wins over /emails/{id}.
        self._paths = sorted(
            ((_path_pattern(t), t) for t in self.document.get("paths", {})),
            key=lambda pair: -len(pair[1].split("{")[0]),
        )

    def __call__(self, request: RecordedRequest) -> None:
        for error in self._openapi.iter_request_errors(_OpenAPIRequest(self.server_url, request)):
            raise RequestViolation(_describe(error), request) from error
        unknown = self._unknown_form_fields(request)
        if unknown:
            raise RequestViolation(f"form fields the document does not have: {unknown}", request)

    def _unknown_form_fields(self, request: RecordedRequest) -> list[str]:
        """openapi-core decodes a form body by the schema's properties and drops any other field
        before validating, so a closed form schema is checked here."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip()
        if media_type != "application/x-www-form-urlencoded":
            return []
        template = next((t for p, t in self._paths if p.match(request.path)), None)
        if template is None:
            return []
        resolve = functools.partial(_resolve, self.document)
        operation = self.document["paths"][template].get(request.method.lower(), {})
        body = operation.get("requestBody", {})
        body = resolve(body["$ref"]) if "$ref" in body else body
        schema = body.get("content", {}).get(media_type, {}).get("schema", {})
        schema = resolve(schema["$ref"]) if "$ref" in schema else schema
        if schema.get("additionalProperties") is not False:
            return []
        fields = parse_qs(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        return sorted(set(fields) - set(schema.get("properties", {})))


class JsonSchemaCheck:
    """Checks requests against JSON Schemas of your own, one per route: ``{("POST",
    "/messages"): schema}``. A request to a route not listed, a body that is not JSON, or a body
    the route's schema refuses is a violation. ``strict`` as for :class:`OpenAPICheck`."""

    def __init__(
        self, routes: Mapping[tuple[str, str], Mapping[str, Any]], *, strict: bool = True
    ) -> None:
        from jsonschema.validators import validator_for

        self._validators = {}
        for (method, path), schema in routes.items():
            checked = strict_schema(schema) if strict else dict(schema)
            cls = validator_for(checked)
            cls.check_schema(checked)
            self._validators[(method.upper(), path)] = cls(checked)

    def __call__(self, request: RecordedRequest) -> None:
        validator = self._validators.get((request.method.upper(), request.path))
        if validator is None:
            raise RequestViolation("no such route", request)
        media_type = request.headers.get("content-type", "").split(";")[0].strip()
        if media_type != "application/json":
            raise RequestViolation(f"the body is {media_type or 'untyped'}, not JSON", request)
        try:
            body = json.loads(request.body.decode("utf-8"))
        except ValueError as exc:
            raise RequestViolation(f"the body is not JSON: {exc}", request) from exc
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            raise RequestViolation("; ".join(_schema_errors(errors)), request) from errors[0]
