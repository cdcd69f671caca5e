"""Write a tenant's channel back to its YAML file, for ``POST /messaging/config/provider``.

The file is edited round-trip (ruamel.yaml), so the operator's comments, key order and
``${ENV}`` references survive: a credential sent with the value its ``${ENV}`` reference resolves
to, or with its masked form as ``GET /messaging/config/{tenant}`` shows it, keeps the reference
(or the stored value). The result is validated whole before anything is written; the write is a
temporary file in the same directory, fsync'd, mode 0600, renamed over the old one.
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
from pipecored.masking import is_masked_form_of
from pipecored.provider import Provider

FILE_MODE = 0o600


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def tenant_path(config_dir: Path, tenant_id: str) -> Path:
    return config_dir / TENANTS_DIR / f"{tenant_id}{TENANT_SUFFIX}"


def _merge_credentials(
    old: Mapping[str, Any] | None, new: Mapping[str, str], env: Mapping[str, str]
) -> CommentedMap:
    merged = CommentedMap()
    for name, value in new.items():
        previous = old.get(name) if old else None
        if isinstance(previous, str) and (
            (has_env_ref(previous) and resolve(previous, env) == value)
            or is_masked_form_of(value, resolve(previous, env))
        ):
            merged[name] = previous
        else:
            merged[name] = value
    return merged


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
        doc = yaml.load(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            doc = CommentedMap({"name": tenant_id, "channels": CommentedMap()})
    channels = doc.get("channels")
    if not isinstance(channels, dict):
        channels = doc["channels"] = CommentedMap()
    entry = channels.get(channel)
    if not isinstance(entry, dict):
        entry = channels[channel] = CommentedMap()
    old_credentials = entry.get("credentials") if entry.get("provider") == provider else None
    entry["provider"] = provider
    entry["credentials"] = _merge_credentials(
        old_credentials if isinstance(old_credentials, dict) else None, credentials, env
    )
    entry["isActive"] = is_active
    if old_credentials is None:
        entry.pop("baseUrl", None)  # a base URL belonged to the provider being replaced

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
