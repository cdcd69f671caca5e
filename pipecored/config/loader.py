"""Read configuration files: YAML, then ``${ENV}`` substitution, then the models, then the
providers' own credential schemas. Every problem is reported as ``FILE: key.path: message``."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipecored.channels import ChannelSet
from pipecored.config.model import (
    TENANT_ID_PATTERN,
    ChannelConfig,
    DaemonConfig,
    KeyPathError,
    TenantConfig,
    api_key_digest,
)
from pipecored.errors import ConfigError, ConfigIssue
from pipecored.provider import Provider

DAEMON_FILE = "pipecored.yaml"
TENANTS_DIR = "tenants"
TENANT_SUFFIX = ".yaml"

# ${NAME}, or ${NAME:-default} used when NAME is unset or empty (as in POSIX shells and Compose
# files: an exported-but-empty variable must not turn into an empty API key or token).
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _lookup(match: re.Match[str], env: Mapping[str, str]) -> str | None:
    """The value a reference stands for; None when the variable is unset and has no default."""
    name, default = match.group(1), match.group(2)
    value = env.get(name)
    if default is not None and not value:
        return default
    return value


def substitute_env(
    data: Any, env: Mapping[str, str], *, path: str = "", issues: list[ConfigIssue], file: str
) -> Any:
    """Replace ``${NAME}`` in every string; a missing variable is an issue naming it."""
    if isinstance(data, str):

        def replace(match: re.Match[str]) -> str:
            value = _lookup(match, env)
            if value is None:
                issues.append(
                    ConfigIssue(file, path, f"environment variable {match.group(1)} is not set")
                )
                return ""
            return value

        return _ENV_REF.sub(replace, data)
    if isinstance(data, dict):
        return {
            k: substitute_env(v, env, path=_join(path, str(k)), issues=issues, file=file)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [
            substitute_env(v, env, path=_join(path, str(i)), issues=issues, file=file)
            for i, v in enumerate(data)
        ]
    return data


def resolve(value: str, env: Mapping[str, str]) -> str:
    """One string with its ``${ENV}`` references replaced (missing ones left as they are)."""
    return _ENV_REF.sub(lambda m: v if (v := _lookup(m, env)) is not None else m.group(0), value)


def has_env_ref(value: object) -> bool:
    return isinstance(value, str) and _ENV_REF.search(value) is not None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# A tenant file is a few hundred bytes. The cap is checked before anything is read, so that a
# huge file cannot hold the daemon's memory and CPU (a 50 MB file took minutes and gigabytes).
MAX_CONFIG_BYTES = 1024 * 1024


def read_config_bytes(path: Path, *, display: str) -> bytes:
    """A config file's bytes, from a regular file (or a symlink to one) of at most
    :data:`MAX_CONFIG_BYTES`. Anything else is a ConfigError naming the file: a FIFO named
    ``*.yaml`` would block the reader until someone writes to it, a device would never end."""
    try:
        # O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError([ConfigIssue(display, "", f"cannot read: {exc.strerror}")]) from None
    too_big = ConfigIssue(
        display, "", f"over {MAX_CONFIG_BYTES:,} bytes, the limit for a config file"
    )
    chunks: list[bytes] = []
    size = 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([ConfigIssue(display, "", "not a regular file")])
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError([too_big])
        # at most one byte over the cap: the file may have grown since fstat
        while size <= MAX_CONFIG_BYTES and (chunk := os.read(fd, MAX_CONFIG_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError([ConfigIssue(display, "", f"cannot read: {exc.strerror}")]) from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([too_big])
    return b"".join(chunks)


def decode_config(data: bytes, *, display: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(display, "", "not UTF-8 text")]) from None


def read_yaml(path: Path, *, display: str) -> Any:
    text = decode_config(read_config_bytes(path, display=display), display=display)
    return parse_yaml(text, display=display)


class _ConfigLoader(yaml.CSafeLoader):
    """``yaml.SafeLoader`` (on LibYAML: 12 times faster on tenant files) with two guards against
    values that silently differ from the file.

    A key written twice is an error (PyYAML would keep the last one without a word, so a
    duplicated channel or ``apiKeys`` line would pass ``check``). A number whose text YAML 1.1
    would rewrite (``+15005550006`` loses its plus, ``0123`` is octal 83, ``1:30`` is 90,
    ``.inf``) keeps its text: a string field then gets exactly what was written, and a number
    field still parses it (or reports it) through the models.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            # Merge keys (<<) may legitimately be overridden; only the node's own keys count.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    if node.tag.endswith(":int"):
        value: object = loader.construct_yaml_int(node)
    else:
        value = loader.construct_yaml_float(node)
    return value if str(value) == node.value else node.value


_ConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_number)
_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _construct_number)


# A config file holds hundreds of values. YAML aliases let a few hundred bytes stand for
# billions of them ("billion laughs": PyYAML shares the aliased objects, but substitution and
# validation walk the tree expanded, for minutes, on the event loop that also serves requests),
# or for a cycle (``a: &a [*a]``: a RecursionError, not a ConfigError). Either is refused.
MAX_YAML_VALUES = 100_000


def _too_many_values(data: Any, limit: int) -> bool:
    """Whether ``data``, aliases expanded, holds over ``limit`` values (a cycle holds infinitely
    many). Stops counting at ``limit``, so it costs at most that much."""
    stack = [data]
    count = 0
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_yaml(text: str, *, display: str) -> Any:
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([ConfigIssue(display, "", f"{where}{problem}")]) from None
    if _too_many_values(data, MAX_YAML_VALUES):
        raise ConfigError(
            [
                ConfigIssue(
                    display,
                    "",
                    f"over {MAX_YAML_VALUES} values once aliases are expanded"
                    " (an alias nested in itself, or aliases of aliases)",
                )
            ]
        )
    return data


def _pydantic_issues(exc: ValidationError, file: str) -> list[ConfigIssue]:
    issues = []
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors:
        # pydantic marks a bad mapping key (an unknown channel) with a "[key]" location step;
        # the path to the key itself is what the operator needs.
        path = ".".join(str(p) for p in err["loc"] if p != "[key]")
        message = err["msg"]
        cause = err.get("ctx", {}).get("error")
        if err["type"] == "too_short" and any(
            other["loc"][: len(err["loc"])] == err["loc"] and other is not err for other in errors
        ):
            continue  # "at least 1 item after validation, not 0": its items' errors say why
        if isinstance(cause, KeyPathError):
            path, message = _join(path, cause.path), cause.message
        elif err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "too_short" and message.startswith("Tuple "):
            message = message.removeprefix("Tuple ").partition(" after validation")[0]
            message = f"List {message}"  # a tuple is the model's detail, not the file's
        elif err["type"] == "tuple_type":
            message = "Input should be a list"  # a tuple is the model's detail, not the file's
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        issues.append(ConfigIssue(file, path, message))
    return issues


def _not_under(issues: list[ConfigIssue], env_issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """``issues`` without those at a value whose ``${ENV}`` was missing: the missing variable is
    the problem there, not the empty string that stood in for it."""
    missing = {i.path for i in env_issues}
    return [
        i for i in issues if not any(i.path == p or i.path.startswith(f"{p}.") for p in missing)
    ]


def parse_daemon_config(
    raw: Any,
    *,
    env: Mapping[str, str],
    display: str,
    providers: Mapping[str, Provider] | None = None,
) -> DaemonConfig:
    """Every issue in the file at once; ``providers`` (when given) checks ``providers.<name>``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue(display, "", "expected a mapping of settings")])
    env_issues: list[ConfigIssue] = []
    data = substitute_env(raw, env, issues=env_issues, file=display)
    issues = list(env_issues)
    daemon: DaemonConfig | None = None
    try:
        daemon = DaemonConfig.model_validate(data)
    except ValidationError as exc:
        issues.extend(_not_under(_pydantic_issues(exc, display), env_issues))
    if providers is not None and isinstance(data.get("providers"), dict):
        issues.extend(
            ConfigIssue(display, f"providers.{name}", f"unknown provider {name!r}")
            for name in data["providers"]
            if name not in providers
        )
    if issues or daemon is None:
        raise ConfigError(issues)
    return daemon


def load_daemon_config(
    config_dir: Path, *, env: Mapping[str, str], providers: Mapping[str, Provider] | None = None
) -> DaemonConfig:
    path = config_dir / DAEMON_FILE
    if not path.exists():
        return DaemonConfig()
    return parse_daemon_config(
        read_yaml(path, display=DAEMON_FILE), env=env, display=DAEMON_FILE, providers=providers
    )


def tenant_id_of(path: Path) -> str:
    return path.name.removesuffix(TENANT_SUFFIX)


def check_tenant_id(tenant_id: str, *, display: str) -> None:
    if not TENANT_ID_PATTERN.match(tenant_id):
        raise ConfigError(
            [ConfigIssue(display, "", "tenant id (the file name) must match [a-z0-9_-]{1,64}")]
        )


def provider_issues(
    tenant: TenantConfig, providers: Mapping[str, Provider], *, display: str
) -> list[ConfigIssue]:
    """Check every route against the provider it names (known, serves the channel,
    credentials), and every template mapping against a loaded provider."""
    issues: list[ConfigIssue] = []
    for channel, config in tenant.channels.items():
        issues.extend(channel_issues(channel, config, providers, display=display))
    for name, languages in tenant.templates.items():
        for language, mapping in languages.items():
            for key in mapping:
                if key != "text" and key not in providers:
                    known = ", ".join(sorted(providers))
                    issues.append(
                        ConfigIssue(
                            display,
                            f"templates.{name}.{language}.{key}",
                            f"unknown provider {key!r} (loaded: {known}; or text)",
                        )
                    )
    return issues


def channel_issues(
    channel: str, config: ChannelConfig, providers: Mapping[str, Provider], *, display: str
) -> list[ConfigIssue]:
    declared = ChannelSet.of(providers)
    if channel not in declared:
        return [
            ConfigIssue(
                display,
                f"channels.{channel}",
                f"unknown channel {channel!r} (declared: {', '.join(sorted(declared))})",
            )
        ]
    issues: list[ConfigIssue] = []
    for suffix, route in config.labelled_routes():
        where = f"channels.{channel}{suffix}"
        provider = providers.get(route.provider)
        if provider is None:
            known = ", ".join(sorted(providers)) or "none"
            issues.append(
                ConfigIssue(
                    display,
                    f"{where}.provider",
                    f"unknown provider {route.provider!r} (loaded: {known})",
                )
            )
            continue
        if channel not in provider.channels:
            issues.append(
                ConfigIssue(
                    display,
                    f"{where}.provider",
                    f"provider {route.provider} does not serve {channel} "
                    f"(it serves {', '.join(sorted(provider.channels))})",
                )
            )
        issues.extend(credential_issues(provider, channel, route.credentials, display, where))
    return issues


def _valid_channels(data: Mapping[str, Any]) -> dict[str, ChannelConfig]:
    """The channels of an invalid tenant file that are valid on their own."""
    channels = data.get("channels")
    valid: dict[str, ChannelConfig] = {}
    if not isinstance(channels, dict):
        return valid
    for name, raw in channels.items():
        if not isinstance(name, str):
            continue
        try:
            valid[name] = ChannelConfig.model_validate(raw)
        except ValidationError:
            continue
    return valid


def credential_warnings(
    tenant: TenantConfig, providers: Mapping[str, Provider], *, display: str
) -> list[ConfigIssue]:
    """Optional credentials left out whose absence costs something (the provider says what):
    reported, but the file is valid."""
    warnings: list[ConfigIssue] = []
    for channel, config in tenant.channels.items():
        for suffix, route in config.labelled_routes():
            provider = providers.get(route.provider)
            for field in provider.credentials if provider else ():
                if field.missing_warning and not route.credentials.get(field.name):
                    where = f"channels.{channel}{suffix}.credentials.{field.name}"
                    warnings.append(
                        ConfigIssue(display, where, f"warning: {field.missing_warning}")
                    )
    return warnings


def config_warnings(
    config_dir: Path, *, providers: Mapping[str, Provider], env: Mapping[str, str]
) -> list[ConfigIssue]:
    """The warnings of every valid tenant file, for ``pipecored check``."""
    warnings: list[ConfigIssue] = []
    for path in tenant_files(config_dir):
        try:
            tenant = load_tenant_file(path, providers=providers, env=env)
        except ConfigError:
            continue  # its errors are check_config_dir's
        warnings.extend(credential_warnings(tenant, providers, display=tenant_display(path)))
    return warnings


def credential_issues(
    provider: Provider,
    channel: str,
    credentials: Mapping[str, str],
    display: str,
    where: str,
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    declared = {c.name: c for c in provider.credentials}
    for field in provider.credentials:
        value = credentials.get(field.name)
        if field.required_for(channel) and not value:
            issues.append(
                ConfigIssue(
                    display,
                    f"{where}.credentials.{field.name}",
                    f"required by provider {provider.name}",
                )
            )
    for name in credentials:
        if name not in declared:
            known = ", ".join(declared) or "none"
            issues.append(
                ConfigIssue(
                    display,
                    f"{where}.credentials.{name}",
                    f"unknown credential for provider {provider.name} (it takes: {known})",
                )
            )
    return issues


def key_conflicts(
    keys: Sequence[str], taken: Collection[bytes], *, display: str, path: str, message: str
) -> list[ConfigIssue]:
    """An API or admin key that something else already holds. A key must identify exactly one
    principal: with two owners, whichever is indexed last would silently act as the other.
    The message never names the other owner (tenants may read their own config errors)."""
    return [
        ConfigIssue(display, f"{path}.{index}", message)
        for index, key in enumerate(keys)
        if api_key_digest(key) in taken  # a key written plainly and as its hash is one key
    ]


TENANT_KEY_TAKEN = "this key already belongs to another tenant or is an admin key"
ADMIN_KEY_TAKEN = "this key is already a tenant's API key"


def parse_tenant(
    raw: Any,
    *,
    tenant_id: str,
    providers: Mapping[str, Provider],
    env: Mapping[str, str],
    display: str,
) -> TenantConfig:
    """A tenant file, checked whole: every issue it has is in the ConfigError."""
    check_tenant_id(tenant_id, display=display)
    if not isinstance(raw, dict):
        raise ConfigError(
            [ConfigIssue(display, "", "expected a mapping (name, apiKeys, channels)")]
        )
    env_issues: list[ConfigIssue] = []
    data = substitute_env(raw, env, issues=env_issues, file=display)
    issues = list(env_issues)
    tenant: TenantConfig | None = None
    try:
        tenant = TenantConfig.model_validate(data)
    except ValidationError as exc:
        issues.extend(_not_under(_pydantic_issues(exc, display), env_issues))
        # A typo elsewhere must not hide a missing credential: the channels that are valid on
        # their own are still checked against their providers.
        for channel, config in _valid_channels(data).items():
            issues.extend(
                _not_under(channel_issues(channel, config, providers, display=display), env_issues)
            )
    else:
        issues.extend(_not_under(provider_issues(tenant, providers, display=display), env_issues))
    if issues or tenant is None:
        raise ConfigError(issues)
    return tenant


def tenant_display(path: Path) -> str:
    return f"{TENANTS_DIR}/{path.name}"


def load_tenant_file(
    path: Path, *, providers: Mapping[str, Provider], env: Mapping[str, str]
) -> TenantConfig:
    display = tenant_display(path)
    return parse_tenant(
        read_yaml(path, display=display),
        tenant_id=tenant_id_of(path),
        providers=providers,
        env=env,
        display=display,
    )


def tenant_files(config_dir: Path) -> list[Path]:
    tenants = config_dir / TENANTS_DIR
    if not tenants.is_dir():
        return []
    return sorted(
        p
        for p in tenants.iterdir()
        if p.name.endswith(TENANT_SUFFIX) and not p.name.startswith(".")
    )


def check_config_dir(
    config_dir: Path, *, providers: Mapping[str, Provider], env: Mapping[str, str]
) -> list[ConfigIssue]:
    """Every issue in every file, for ``pipecored check`` (the same rules the daemon applies)."""
    issues: list[ConfigIssue] = []
    if not config_dir.is_dir():
        return [ConfigIssue(str(config_dir), "", "not a directory")]
    taken: set[bytes] = set()
    try:
        daemon = load_daemon_config(config_dir, env=env, providers=providers)
    except ConfigError as exc:
        issues.extend(exc.issues)
    else:
        taken.update(api_key_digest(k) for k in daemon.auth.admin_keys)
    for path in tenant_files(config_dir):
        try:
            tenant = load_tenant_file(path, providers=providers, env=env)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        conflicts = key_conflicts(
            tenant.api_keys,
            taken,
            display=tenant_display(path),
            path="apiKeys",
            message=TENANT_KEY_TAKEN,
        )
        issues.extend(conflicts)
        if not conflicts:
            taken.update(api_key_digest(k) for k in tenant.api_keys)
    return issues
