"""Write a tenant's channel back to its YAML file, for ``POST /messaging/config/provider``.

The file is edited round-trip (ruamel.yaml), so the operator's comments, key order and
``${ENV}`` references survive: a credential sent with the value its ``${ENV}`` reference resolves
to, or with its masked form as ``GET /messaging/config/{tenant}`` shows it, keeps the reference
(or the stored value); a masked value with no stored secret behind it is refused. A file that is
not a YAML mapping is refused too (rewriting it would lose what the operator wrote), and so is a
file with a problem the request does not touch (``409 tenant_config_invalid``, naming the file:
the operator must fix it by hand). The result is validated whole before anything is written; the
write is a temporary file in the same directory, fsync'd, mode 0600, renamed over the old one.

An operator may edit the file while the API writes it. Just before the rename, the file is read
again and compared with what the edit started from; if it changed, nothing is written and the
request is answered ``409 config_changed`` (the operator's edit is never silently reverted). The
window left is the rename itself: POSIX has no compare-and-swap for files.
"""

from __future__ import annotations

import fcntl
import io
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from pipecored.config.loader import (
    TENANT_KEY_TAKEN,
    TENANT_SUFFIX,
    TENANTS_DIR,
    check_tenant_id,
    decode_config,
    has_env_ref,
    key_conflicts,
    parse_tenant,
    parse_yaml,
    read_config_bytes,
    resolve,
)
from pipecored.config.model import TenantConfig
from pipecored.errors import ConfigChanged, ConfigError, ConfigIssue, TenantConfigInvalid
from pipecored.masking import MASK, is_masked_form_of
from pipecored.provider import Provider

log = structlog.get_logger("pipecored.config")

FILE_MODE = 0o600
LOCK_FILE = ".write.lock"  # in tenants/: serializes the API's writes, across processes too


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
    taken_keys: Collection[bytes] = frozenset(),
    actor: str | None = None,
) -> tuple[TenantConfig, bool]:
    """Set a channel's provider; returns the new tenant and whether the tenant was created.

    Raises ConfigError (the request's issues) when the result would not be valid;
    :class:`~pipecored.errors.TenantConfigInvalid` when the file has a problem the request does
    not touch, or holds one of ``taken_keys`` (the live keys of every other principal, as
    digests); :class:`~pipecored.errors.ConfigChanged` when the file changed while it was being
    edited. Nothing is written then. ``actor`` names the caller's key in the log line (never
    the key itself).
    """
    display = f"{TENANTS_DIR}/{tenant_id}{TENANT_SUFFIX}"
    check_tenant_id(tenant_id, display=display)
    path = tenant_path(config_dir, tenant_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _writers_lock(path.parent):
        before = _read_current(path, display)
        doc = _document(before, tenant_id, display)
        _set_channel(doc, channel, provider, credentials, is_active, env, display)
        out = io.StringIO()
        _yaml().dump(doc, out)
        text = out.getvalue()
        try:
            tenant = parse_tenant(
                parse_yaml(text, display=display),
                tenant_id=tenant_id,
                providers=providers,
                env=env,
                display=display,
            )
        except ConfigError as exc:
            raise _blame(exc, channel) from None
        conflicts = key_conflicts(
            tenant.api_keys, taken_keys, display=display, path="apiKeys", message=TENANT_KEY_TAKEN
        )
        if conflicts:
            raise TenantConfigInvalid(f"{conflicts[0]}; fix the file by hand")
        write_atomically(path, text, expected=before)
    log.info(
        "config.tenant_written",
        tenant=tenant_id,
        file=display,
        channel=channel,
        provider=provider,
        created=before is None,
        by=actor,
    )
    return tenant, before is None


def _read_current(path: Path, display: str) -> bytes | None:
    """The file's bytes as the edit starts from them; None when there is no file."""
    if not path.exists():
        return None
    try:
        return read_config_bytes(path, display=display)
    except ConfigError as exc:
        raise UneditableTenantFile(
            [ConfigIssue(display, "", f"{exc.issues[0].message}; fix the file by hand")]
        ) from None


def _document(before: bytes | None, tenant_id: str, display: str) -> CommentedMap:
    if before is None:
        doc = CommentedMap()
        doc["name"] = tenant_id
        doc["apiKeys"] = []
        doc["channels"] = CommentedMap()
        return doc
    try:
        doc = _yaml().load(decode_config(before, display=display))
    except ConfigError as exc:
        raise UneditableTenantFile(
            [ConfigIssue(display, "", f"{exc.issues[0].message}; fix the file by hand")]
        ) from None
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UneditableTenantFile(
            [ConfigIssue(display, "", f"not valid YAML ({problem}); fix the file by hand")]
        ) from None
    if doc is None:  # an empty file
        return CommentedMap({"name": tenant_id, "channels": CommentedMap()})
    if not isinstance(doc, CommentedMap):
        raise UneditableTenantFile(
            [ConfigIssue(display, "", "not a mapping of settings; fix the file by hand")]
        )
    return doc


def _set_channel(
    doc: CommentedMap,
    channel: str,
    provider: str,
    credentials: Mapping[str, str],
    is_active: bool,
    env: Mapping[str, str],
    display: str,
) -> None:
    channels = doc.get("channels")
    if not isinstance(channels, dict):
        channels = doc["channels"] = CommentedMap()
    entry = channels.get(channel)
    if not isinstance(entry, dict):
        entry = channels[channel] = CommentedMap()
    same_provider = entry.get("provider") == provider
    fallbacks = entry.get("fallbacks")
    fallbacks = fallbacks if isinstance(fallbacks, list) else []
    # Setting a provider ends the channel's experiment (promoting its winner is this one
    # change): an arm of that provider keeps its credentials, as a fallback's would.
    experiment = entry.pop("experiment", None)
    arms = experiment.get("arms") if isinstance(experiment, dict) else None
    arms = [a for a in arms if isinstance(a, dict)] if isinstance(arms, list) else []
    if arms:
        base_url = next((a.get("baseUrl") for a in arms if a.get("provider") == provider), None)
        if base_url is not None:
            entry["baseUrl"] = base_url  # the promoted arm's, kept below
        same_provider = base_url is not None
    entry["provider"] = provider
    entry["credentials"] = _merge_credentials(
        _previous_credentials(
            entry if same_provider and not arms else None, [*arms, *fallbacks], provider
        ),
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


def _blame(error: ConfigError, channel: str) -> Exception:
    """The edited file's issues as the request's (a ConfigError, answered 422 naming the field)
    when some are at what the request sets, else as the file's: the request was fine, the file
    around it must be fixed by hand (409, naming the file and its key)."""
    where = f"channels.{channel}"
    ours = (f"{where}.provider", f"{where}.credentials", f"{where}.isActive")
    requests = [
        issue for issue in error.issues if issue.path in ("", where) or issue.path.startswith(ours)
    ]
    if requests:
        return ConfigError(requests)
    return TenantConfigInvalid(f"{error.issues[0]}; fix the file by hand")


@contextmanager
def _writers_lock(directory: Path) -> Iterator[None]:
    """Serialize the writers of one tenants/ dir, other daemons on it included (an flock on the
    directory itself: no lock file to leave behind). Operators' editors take no lock; for them
    there is the comparison in :func:`write_atomically`."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_atomically(path: Path, text: str, *, expected: bytes | None) -> None:
    """Replace ``path`` with ``text`` if it still holds ``expected`` (None: if it still does not
    exist), else raise ConfigChanged and leave it alone."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if expected is None:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile: nothing to overwrite
            except FileExistsError:
                raise _changed(path) from None
            os.unlink(tmp)
        else:
            if _current_bytes(path) != expected:
                raise _changed(path)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _current_bytes(path: Path) -> bytes | None:
    try:
        return read_config_bytes(path, display=path.name)
    except ConfigError:
        return None


def _changed(path: Path) -> ConfigChanged:
    return ConfigChanged(
        f"{TENANTS_DIR}/{path.name} changed on disk while it was being edited; nothing was "
        "written: read the configuration again and repeat the change"
    )
