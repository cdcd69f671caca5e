"""Random and mutated tenant files: a reload never raises, never replaces a good version with
an invalid one, and ``pipecored check`` (check_config_dir) agrees with the daemon."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipecored.config.loader import check_config_dir
from pipecored.config.registry import ADMIN, TenantRegistry, key_digest
from pipecored.plugins import LoadedProviders
from tests.conftest import ADMIN_KEY, httpjson_channel
from tests.fuzz.strategies import awkward_text, mutated

URL = "http://127.0.0.1:9"
ACME_KEY = "acme-key-0123456789"
ENV = {"HOME": "/home/pipecored", "PIPECORE_FUZZ_SET": "value"}

VALID: dict[str, Any] = {
    "name": "Acme",
    "apiKeys": [ACME_KEY, "acme-key-second-0123"],
    "channels": {
        "sms": {**httpjson_channel(URL), "rateLimit": {"perSecond": 5, "burst": 10}},
        "email": {**httpjson_channel(URL), "fallbacks": [{"provider": "console"}]},
        "whatsapp": {**httpjson_channel(URL), "isActive": False},
    },
}

# Whole files that are not a mutated document: YAML's corners, and not-YAML.
SPECIAL_FILES = [
    b"",
    b"~\n",
    b"[]\n",
    b"- a\n- b\n",
    b"name: &a [*a]\n",  # an alias nested in itself
    b"&a {name: x, channels: *a}\n",
    b"name: x\napiKeys: &k [*k]\n",
    # aliases of aliases: a few hundred bytes that stand for 9**8 strings
    (
        "name: x\nl0: &l0 [a,a,a,a,a,a,a,a,a]\n"
        + "".join(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 9))
    ).encode(),
    b"[" * 5000,
    b"name: !!python/object:os.system x\n",
    b"name: !!binary aGVsbG8=\n",
    b"name: x\nname: y\n",
    b"\xef\xbb\xbfname: x\n",  # BOM
    b"\xff\xfe\x00n\x00a",
    b"name: x\x00\n",
    b"name:\t x\n",
    b"<<: {name: x}\nchannels: {}\n",
]


def _serialize(doc: Any, how: str) -> bytes:
    if how == "json":
        return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")


@st.composite
def tenant_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "text", "bytes", "special"]))
    if kind == "mutated":
        data = _serialize(draw(mutated(VALID)), draw(st.sampled_from(["yaml", "json"])))
        if draw(st.booleans()):
            # and a slice of the text replaced by awkward characters
            start = draw(st.integers(0, len(data)))
            end = draw(st.integers(start, min(len(data), start + 20)))
            noise = draw(awkward_text).encode("utf-8", "surrogatepass")
            data = data[:start] + noise + data[end:]
        return data
    if kind == "text":
        return draw(awkward_text).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    return draw(st.sampled_from(SPECIAL_FILES))


def _config_dir(root: Path) -> Path:
    (root / "tenants").mkdir()
    settings_ = {"store": f"sqlite:///{root / 'unused.db'}", "auth": {"adminKeys": [ADMIN_KEY]}}
    (root / "pipecored.yaml").write_text(yaml.safe_dump(settings_), encoding="utf-8")
    return root


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=tenant_files())
def test_a_reload_keeps_the_last_good_tenant(providers: LoadedProviders, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = _config_dir(Path(tmp))
        path = root / "tenants" / "acme.yaml"
        path.write_text(yaml.safe_dump(VALID), encoding="utf-8")
        registry = TenantRegistry(root, providers, env=ENV)
        registry.load()
        good = registry.snapshot.tenants["acme"]
        assert good.config is not None and good.error is None, good.error

        path.write_bytes(data)
        entry = registry.reload_tenant("acme")  # must not raise, whatever the file holds
        issues = check_config_dir(root, providers=providers, env=ENV)  # nor this

        assert entry is not None
        assert registry.snapshot.tenants["acme"] is entry
        if entry.error is None:
            # A new version went live: it is a whole valid config, and `check` finds nothing.
            assert entry.config is not None
            assert issues == [], issues
            live_keys = entry.config.api_keys
        else:
            # The file is refused: the last good version stays live, with the reason beside it,
            # and `check` reports the file too.
            assert entry.config == good.config, "an invalid file replaced the last good config"
            assert entry.error.issues, "an error with no issue"
            assert all(i.file == "tenants/acme.yaml" for i in entry.error.issues)
            assert issues, "the daemon refused the file but `check` finds nothing"
            live_keys = good.config.api_keys
        for key in live_keys:
            assert registry.snapshot.keys.get(key_digest(key)) == "acme"
        assert registry.snapshot.keys.get(key_digest(ADMIN_KEY)) == ADMIN


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=tenant_files())
def test_an_invalid_first_version_is_never_live(providers: LoadedProviders, data: bytes) -> None:
    """A file never valid since the daemon started: load() does not raise, and the tenant has
    no config (so no key acts as it) until its file is fixed."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _config_dir(Path(tmp))
        (root / "tenants" / "acme.yaml").write_bytes(data)
        registry = TenantRegistry(root, providers, env=ENV)
        registry.load()
        entry = registry.snapshot.tenants["acme"]
        issues = check_config_dir(root, providers=providers, env=ENV)
        if entry.error is None:
            assert entry.config is not None
            assert issues == [], issues
        else:
            assert entry.config is None
            assert issues
            assert "acme" not in registry.snapshot.keys.values()
