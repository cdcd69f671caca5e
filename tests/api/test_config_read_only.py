"""A config dir that is read-only on this node (a Kubernetes ConfigMap, a shared volume mounted
read-only): the config API answers 409 ``config_read_only`` and changes nothing (SPEC section 12).

The directory is made read-only the way a ConfigMap is, by a read-only mount (a bind mount of
itself, remounted ``ro``): file modes would not stop root, which the tests may run as.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ACME_KEY, assert_error, send
from tests.conftest import ADMIN_KEY, ConfigDir, auth


@pytest.fixture
def read_only_tenants(config_dir: ConfigDir) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("making a read-only mount needs root")
    tenants = config_dir.path / "tenants"
    subprocess.run(["mount", "--bind", str(tenants), str(tenants)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(tenants)], check=True)
        yield tenants
    finally:
        subprocess.run(["umount", str(tenants)], check=True)


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


async def test_the_config_api_says_read_only_and_changes_nothing(
    read_only_tenants: Path, client: httpx.AsyncClient
) -> None:
    before = _contents(read_only_tenants)
    body = {"tenantId": "acme", "channel": "sms", "provider": "console", "isActive": True}
    response = await client.post("/messaging/config/provider", json=body, headers=auth(ADMIN_KEY))
    assert_error(response, 409, "config_read_only", names="read-only")
    new_tenant = {**body, "tenantId": "newcomer"}
    response = await client.post(
        "/messaging/config/provider", json=new_tenant, headers=auth(ADMIN_KEY)
    )
    assert_error(response, 409, "config_read_only")

    assert _contents(read_only_tenants) == before
    config = await client.get("/messaging/config/acme", headers=auth(ACME_KEY))
    assert config.json()["channels"]["sms"]["provider"] == "httpjson"
    assert (await send(client, "sms")).status_code == 202  # the node still serves
