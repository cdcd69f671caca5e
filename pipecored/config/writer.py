"""Write a tenant's channel back to its YAML file, for ``POST /messaging/config/provider``.

The file is edited round-trip (ruamel.yaml), so the operator's comments, key order and
``${ENV}`` references survive: a credential sent with the value its ``${ENV}`` reference resolves
to, or with its masked form as ``GET /messaging/config/{tenant}`` shows it, keeps the reference
(or the stored value); a masked value with no stored secret behind it is refused. A file that is
not a YAML mapping is refused too (rewriting it would lose what the operator wrote). The result is
validated whole before anything is written; the write is a temporary file in the same directory,
fsync'd, mode 0600, renamed over the old one.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from pipecored.config.loader import (
    TENANT_SUFFIX,
    TENANTS_DIR,
    check_tenant_id,
    has_env_ref,
    parse_tenant,
    parse_yaml,
    resolve,
)
from pipecored.config.model import TenantConfig
from pipecored.errors import ConfigError, ConfigIssue
from pipecored.masking import MASK, is_masked_form_of
from pipecored.provider import Provider

FILE_MODE = 0o600


class UneditableTenantFile(ConfigError):
    """The tenant's file on disk is not a YAML mapping, so it cannot be edited without losing
    what the operator wrote in it; it must be fixed by hand first."""


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def tenant_path(config_dir: Path, tenant_id: str) -> Path:
    return config_dir / TENANTS_DIR / f"{tenant_id}{TENANT_SUFFIX}"


def _merge_credentials(
    old: Mapping[str, Any] | None,
    new: Mapping[str, str],
    env: Mapping[str, str],
    *,
    display: str,
    where: str,
) -> CommentedMap:
    merged = CommentedMap()
    issues: list[ConfigIssue] = []
    for name, value in new.items():
        previous = old.get(name) if old else None
        if isinstance(previous, str) and (
            (has_env_ref(previous) and resolve(previous, env) == value)
            or is_masked_form_of(value, resolve(previous, env))
        ):
            merged[name] = previous
        elif value.startswith(MASK):
            # A masked value pasted back from GET stands for the stored secret; with no such
            # secret (another provider, another secret) it would be written as the secret.
            issues.append(
                ConfigIssue(
                    display,
                    f"{where}.{name}",
                    "a masked value only keeps the stored secret of the same provider; "
                    "send the secret itself",
                )
            )
        else:
            merged[name] = value
    if issues:
        raise ConfigError(issues)
    return merged


def _previous_credentials(
    entry: Mapping[str, Any] | None, fallbacks: list[Any], provider: str
) -> Mapping[str, Any] | None:
    """What the file already holds for this provider on this channel: its own entry, else a
    fallback's (switching to the channel's fallback keeps that fallback's ``${ENV}`` refs)."""
    for candidate in [entry, *fallbacks]:
        if isinstance(candidate, dict) and candidate.get("provider") == provider:
            found = candidate.get("credentials")
            if isinstance(found, dict):
                return found
    return None


def _same_route(fallback: Any, entry: Mapping[str, Any]) -> bool:
    return (
        isinstance(fallback, dict)
        and fallback.get("provider") == entry.get("provider")
        and dict(fallback.get("credentials") or {}) == dict(entry.get("credentials") or {})
        and fallback.get("baseUrl") == entry.get("baseUrl")
    )


def update_channel(
    config_dir: Path,
    tenant_id: str,
    channel: str,
    *,
    provider: str,
    credentials: Mapping[str, str],
    is_active: bool,
    providers: Mapping[str, Provider],
    env: Mapping[str, str],
) -> tuple[TenantConfig, bool]:
    """Set a channel's provider; returns the new tenant and whether the tenant was created.

    Raises ConfigError (the whole file's issues) when the result would not be valid; nothing is
    written then.
    """
    display = f"{TENANTS_DIR}/{tenant_id}{TENANT_SUFFIX}"
    check_tenant_id(tenant_id, display=display)
    path = tenant_path(config_dir, tenant_id)
    yaml = _yaml()
    created = not path.exists()
    if created:
        doc = CommentedMap()
        doc["name"] = tenant_id
        doc["apiKeys"] = []
        doc["channels"] = CommentedMap()
    else:
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"))
        except YAMLError as exc:
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise UneditableTenantFile(
                [ConfigIssue(display, "", f"not valid YAML ({problem}); fix the file by hand")]
            ) from None
        if doc is None:  # an empty file
            doc = CommentedMap({"name": tenant_id, "channels": CommentedMap()})
        elif not isinstance(doc, dict):
            raise UneditableTenantFile(
                [ConfigIssue(display, "", "not a mapping of settings; fix the file by hand")]
            )
    channels = doc.get("channels")
    if not isinstance(channels, dict):
        channels = doc["channels"] = CommentedMap()
    entry = channels.get(channel)
    if not isinstance(entry, dict):
        entry = channels[channel] = CommentedMap()
    same_provider = entry.get("provider") == provider
    fallbacks = entry.get("fallbacks")
    fallbacks = fallbacks if isinstance(fallbacks, list) else []
    entry["provider"] = provider
    entry["credentials"] = _merge_credentials(
        _previous_credentials(entry if same_provider else None, fallbacks, provider),
        credentials,
        env,
        display=display,
        where=f"channels.{channel}.credentials",
    )
    entry["isActive"] = is_active
    if not same_provider:
        entry.pop("baseUrl", None)  # a base URL belonged to the provider being replaced
    # A fallback that is now the channel's own provider and account would only retry it.
    for fallback in [f for f in fallbacks if _same_route(f, entry)]:
        fallbacks.remove(fallback)
    if "fallbacks" in entry and not fallbacks:
        del entry["fallbacks"]

    out = io.StringIO()
    yaml.dump(doc, out)
    text = out.getvalue()
    tenant = parse_tenant(
        parse_yaml(text, display=display),
        tenant_id=tenant_id,
        providers=providers,
        env=env,
        display=display,
    )
    write_atomically(path, text)
    return tenant, created


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
