"""Read configuration files: YAML, then ``${ENV}`` substitution, then the models, then the
providers' own credential schemas. Every problem is reported as ``FILE: key.path: message``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipecored.config.model import TENANT_ID_PATTERN, DaemonConfig, TenantConfig
from pipecored.errors import ConfigError, ConfigIssue
from pipecored.provider import Provider

DAEMON_FILE = "pipecored.yaml"
TENANTS_DIR = "tenants"
TENANT_SUFFIX = ".yaml"

# ${NAME}, or ${NAME:-default} used when NAME is unset (as in POSIX shells and Compose files).
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(
    data: Any, env: Mapping[str, str], *, path: str = "", issues: list[ConfigIssue], file: str
) -> Any:
    """Replace ``${NAME}`` in every string; a missing variable is an issue naming it."""
    if isinstance(data, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name not in env:
                if default is not None:
                    return default
                issues.append(ConfigIssue(file, path, f"environment variable {name} is not set"))
                return ""
            return env[name]

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
    return _ENV_REF.sub(
        lambda m: env.get(m.group(1), m.group(2) if m.group(2) is not None else m.group(0)),
        value,
    )


def has_env_ref(value: object) -> bool:
    return isinstance(value, str) and _ENV_REF.search(value) is not None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def read_yaml(path: Path, *, display: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(display, "", "not UTF-8 text")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(display, "", f"cannot read: {exc.strerror}")]) from None
    return parse_yaml(text, display=display)


def parse_yaml(text: str, *, display: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([ConfigIssue(display, "", f"{where}{problem}")]) from None


def _pydantic_issues(exc: ValidationError, file: str) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) for p in err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        issues.append(ConfigIssue(file, path, message))
    return issues


def parse_daemon_config(raw: Any, *, env: Mapping[str, str], display: str) -> DaemonConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue(display, "", "expected a mapping of settings")])
    issues: list[ConfigIssue] = []
    data = substitute_env(raw, env, issues=issues, file=display)
    if issues:
        raise ConfigError(issues)
    try:
        return DaemonConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_issues(exc, display)) from None


def load_daemon_config(config_dir: Path, *, env: Mapping[str, str]) -> DaemonConfig:
    path = config_dir / DAEMON_FILE
    if not path.exists():
        return DaemonConfig()
    return parse_daemon_config(read_yaml(path, display=DAEMON_FILE), env=env, display=DAEMON_FILE)


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
    """Check every route against the provider it names: known, serves the channel, credentials."""
    issues: list[ConfigIssue] = []
    for channel, config in tenant.channels.items():
        for index, route in enumerate(config.routes):
            where = f"channels.{channel}" + ("" if index == 0 else f".fallbacks.{index - 1}")
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


def parse_tenant(
    raw: Any,
    *,
    tenant_id: str,
    providers: Mapping[str, Provider],
    env: Mapping[str, str],
    display: str,
) -> TenantConfig:
    check_tenant_id(tenant_id, display=display)
    if not isinstance(raw, dict):
        raise ConfigError(
            [ConfigIssue(display, "", "expected a mapping (name, apiKeys, channels)")]
        )
    issues: list[ConfigIssue] = []
    data = substitute_env(raw, env, issues=issues, file=display)
    if issues:
        raise ConfigError(issues)
    try:
        tenant = TenantConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_issues(exc, display)) from None
    issues = provider_issues(tenant, providers, display=display)
    if issues:
        raise ConfigError(issues)
    return tenant


def load_tenant_file(
    path: Path, *, providers: Mapping[str, Provider], env: Mapping[str, str]
) -> TenantConfig:
    display = f"{TENANTS_DIR}/{path.name}"
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
    """Every issue in every file, for ``pipecored check``."""
    issues: list[ConfigIssue] = []
    if not config_dir.is_dir():
        return [ConfigIssue(str(config_dir), "", "not a directory")]
    try:
        daemon = load_daemon_config(config_dir, env=env)
    except ConfigError as exc:
        issues.extend(exc.issues)
    else:
        for name in daemon.providers:
            if name not in providers:
                issues.append(
                    ConfigIssue(DAEMON_FILE, f"providers.{name}", f"unknown provider {name!r}")
                )
    for path in tenant_files(config_dir):
        try:
            load_tenant_file(path, providers=providers, env=env)
        except ConfigError as exc:
            issues.extend(exc.issues)
    return issues
