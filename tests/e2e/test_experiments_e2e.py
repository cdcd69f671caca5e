"""A provider experiment through a real daemon (SPEC section 10): a 90/10 split over 1,000
messages, every message's arm recorded, per-arm results and the p-value as computed here by
hand, one arm whose provider fails showing a significantly lower delivery rate, and the winner
promoted with one config change, live. ``pipecored check`` names a bad experiment's field."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.responses import JSONResponse

from tests.conftest import (
    ADMIN_KEY,
    HTTPJSON_SIGNING,
    HTTPJSON_TOKEN,
    ConfigDir,
    Daemon,
    default_daemon_settings,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway, signed_events
from tests.fakes.server import RecordedRequest

KEY = "acme-key-0123456789"
COUNT = 1000


def _experiment(url: str) -> dict[str, Any]:
    return {
        "name": "console-vs-httpjson",
        "arms": [
            {"name": "incumbent", "weight": 90, "provider": "console"},
            {
                "name": "challenger",
                "weight": 10,
                "provider": "httpjson",
                "baseUrl": url,
                "credentials": {"token": HTTPJSON_TOKEN, "signingSecret": HTTPJSON_SIGNING},
            },
        ],
    }


def _all_messages(client: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, "direction": "outbound"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/messaging/logs/acme", params=params).json()
        items += page["items"]
        cursor = page["nextCursor"]
        if not cursor:
            return items


def _p_value(d1: int, n1: int, d2: int, n2: int) -> float:
    """The pooled two-proportion z-test, written out here as a textbook gives it."""
    pooled = (d1 + d2) / (n1 + n2)
    z = (d1 / n1 - d2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    upper_tail = 0.5 * math.erfc(abs(z) / math.sqrt(2))  # 1 - Phi(|z|), without cancellation
    return 2 * upper_tail


def test_a_90_10_split_its_results_and_promoting_the_winner(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    with HttpJsonGateway() as fake:
        root = tmp_path / "config"
        (root / "tenants").mkdir(parents=True)
        cfg = ConfigDir(root)
        cfg.write_daemon(default_daemon_settings(tmp_path / "pipecored.db"))
        cfg.write_tenant(
            "acme",
            {
                "name": "Acme",
                "apiKeys": [KEY],
                "channels": {"sms": {"experiment": _experiment(fake.url)}},
            },
        )
        # the challenger's provider refuses its first 30 messages for good (a 400)
        fake.fail_next(400, times=30)
        daemon = daemon_factory(cfg.path).start()
        with daemon.client(KEY) as client:
            for n in range(COUNT):
                sent = client.post(
                    "/messaging/send/sms", json={"to": "+34600111222", "body": f"Pedido #{n} ✅"}
                )
                assert sent.status_code == 202, sent.text

            def settled() -> list[dict[str, Any]] | None:
                items = _all_messages(client)
                done = all(i["status"] not in ("queued", "sending") for i in items)
                return items if done and len(items) == COUNT else None

            items = wait_until(settled, timeout=120, interval=1.0)
            arms = Counter(i.get("experimentArm") for i in items)
            assert set(arms) == {"incumbent", "challenger"}  # every message records its arm
            sd = math.sqrt(COUNT * 0.9 * 0.1)
            assert abs(arms["incumbent"] - 900) < 4 * sd, arms  # within binomial noise
            by_arm = {
                arm: [i for i in items if i["experimentArm"] == arm]
                for arm in ("incumbent", "challenger")
            }
            assert {i["provider"] for i in by_arm["incumbent"]} == {"console"}
            assert {i["provider"] for i in by_arm["challenger"]} == {"httpjson"}

            # the challenger's provider reports the rest of its messages delivered
            accepted = [i for i in by_arm["challenger"] if i["status"] == "sent"]
            body, headers = signed_events(
                HTTPJSON_SIGNING,
                [{"id": i["providerMessageId"], "status": "delivered"} for i in accepted],
            )
            applied = httpx.post(
                f"{daemon.url}/messaging/webhook/sms?tenant_id=acme&provider=httpjson",
                content=body,
                headers=headers,
            )
            assert applied.status_code in (200, 204), applied.text

            results = client.get("/messaging/experiments/acme").json()
        [experiment] = results["experiments"]
        assert (experiment["channel"], experiment["name"], experiment["active"]) == (
            "sms",
            "console-vs-httpjson",
            True,
        )
        arms_out = {a["name"]: a for a in experiment["arms"]}
        incumbent, challenger = arms_out["incumbent"], arms_out["challenger"]
        n_challenger = arms["challenger"]
        assert (incumbent["messages"], incumbent["delivered"], incumbent["failed"]) == (
            arms["incumbent"],
            arms["incumbent"],
            0,
        )
        assert (challenger["messages"], challenger["failed"], challenger["delivered"]) == (
            n_challenger,
            30,
            n_challenger - 30,
        )
        assert (incumbent["weight"], challenger["weight"]) == (90, 10)
        assert incumbent["deliveryRate"] == 1.0
        assert challenger["deliveryRate"] == (n_challenger - 30) / n_challenger
        expected = _p_value(arms["incumbent"], arms["incumbent"], n_challenger - 30, n_challenger)
        assert math.isclose(experiment["pValue"], expected, rel_tol=1e-9, abs_tol=0)
        assert experiment["significant"] is True
        assert challenger["latencyMs"]["p50"] is not None

        metrics = httpx.get(f"{daemon.url}/metrics").text
        assert (
            'pipecore_experiment_messages_total{arm="challenger",channel="sms",'
            'experiment="console-vs-httpjson",status="failed",tenant="acme"} 30.0'
        ) in metrics

        # promoting the winner: one config change, live for the next message
        with daemon.client(ADMIN_KEY) as admin:
            switched = admin.post(
                "/messaging/config/provider",
                json={"tenantId": "acme", "channel": "sms", "provider": "console"},
            )
            assert switched.status_code == 200, switched.text
            assert "experiment" not in switched.json()["channels"]["sms"]
        with daemon.client(KEY) as client:
            after = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "Hola"})
            record = wait_until(
                lambda: (
                    (m := client.get(f"/messaging/messages/{after.json()['id']}").json())["status"]
                    == "delivered"
                    and m
                )
            )
            assert "experimentArm" not in record and record["provider"] == "console"
            again = client.get("/messaging/experiments/acme").json()["experiments"]
            assert [(e["name"], e["active"]) for e in again] == [("console-vs-httpjson", False)]


def test_check_names_a_bad_experiment(tmp_path: Path) -> None:
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    cfg = ConfigDir(root)
    cfg.write_daemon(default_daemon_settings(tmp_path / "pipecored.db"))
    experiment = _experiment("http://127.0.0.1:9")
    experiment["arms"][1]["provider"] = "nosuchprovider"
    cfg.write_tenant(
        "acme",
        {"name": "Acme", "apiKeys": [KEY], "channels": {"sms": {"experiment": experiment}}},
    )
    cfg.write_tenant(
        "globex",
        {
            "name": "Globex",
            "channels": {
                "sms": {
                    "provider": "console",
                    "experiment": {
                        "name": "x",
                        "arms": [{"name": "a", "weight": 0, "provider": "console"}],
                    },
                }
            },
        },
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipecored", "check", "--config", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "channels.sms.experiment.arms.1.provider" in result.stdout, result.stdout
    assert "nosuchprovider" in result.stdout
    assert "globex" in result.stdout and "provider" in result.stdout, result.stdout


def _trial(url: str, *, challenger_weight: float) -> dict[str, Any]:
    return {
        "name": "trial",
        "arms": [
            {"name": "incumbent", "weight": 1, "provider": "console"},
            {
                "name": "challenger",
                "weight": challenger_weight,
                "provider": "httpjson",
                "baseUrl": url,
                "credentials": {"token": HTTPJSON_TOKEN, "signingSecret": HTTPJSON_SIGNING},
            },
        ],
    }


def _send(client: httpx.Client, count: int, text: str) -> list[str]:
    ids = []
    for n in range(count):
        sent = client.post(
            "/messaging/send/sms", json={"to": "+34600111222", "body": f"{text} {n}"}
        )
        assert sent.status_code == 202, sent.text
        ids.append(sent.json()["id"])
    return ids


def _settled(client: httpx.Client, ids: list[str]) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        records = [client.get(f"/messaging/messages/{i}").json() for i in ids]
        return records if all(r["status"] == "delivered" for r in records) else None

    records: list[dict[str, Any]] = wait_until(done, timeout=60, interval=0.5)
    return records


def test_fallbacks_after_an_arm_and_promoting_the_winner_in_the_file(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    """The challenger's provider is down (a 503 that echoes its token): its messages go on to
    the channel's fallback and count for their arm, its token shows nowhere; setting its
    weight to 0 in the file stops it live, and replacing the experiment with a provider in the
    file ends the experiment live, its results kept."""
    outputs: list[str] = []

    def down(request: RecordedRequest) -> JSONResponse:
        return JSONResponse(
            {"error": f"upstream down for {request.headers.get('authorization')}"},
            status_code=503,
        )

    with HttpJsonGateway() as fake:
        fake.server.handler = down
        root = tmp_path / "config"
        (root / "tenants").mkdir(parents=True)
        cfg = ConfigDir(root)
        # one attempt per route, and a circuit that stays closed: every challenger message
        # tries the arm's provider once, then the fallback
        cfg.write_daemon(
            default_daemon_settings(
                tmp_path / "pipecored.db", maxAttempts=1, circuit={"failureThreshold": 1000}
            )
        )

        def tenant(sms: dict[str, Any]) -> None:
            cfg.write_tenant("acme", {"name": "Acme", "apiKeys": [KEY], "channels": {"sms": sms}})

        fallbacks = [{"provider": "console"}]
        tenant({"experiment": _trial(fake.url, challenger_weight=1), "fallbacks": fallbacks})
        daemon = daemon_factory(cfg.path).start()
        with daemon.client(KEY) as client, daemon.client(ADMIN_KEY) as admin:
            records = _settled(client, _send(client, 40, "Reserva"))
            outputs += [str(r) for r in records]
            by_arm = Counter(r["experimentArm"] for r in records)
            assert set(by_arm) == {"incumbent", "challenger"}, by_arm  # 2**-39 to fail
            for record in records:
                providers = [a["provider"] for a in record["attempts"]]
                if record["experimentArm"] == "challenger":
                    # its arm's provider first, then the fallback
                    assert providers == ["httpjson", "console"], record
                    assert "upstream down" in (record["attempts"][0]["errorMessage"] or "")
                else:
                    assert providers == ["console"], record
            view = admin.get("/messaging/config/acme")
            outputs.append(view.text)
            arms = view.json()["channels"]["sms"]["experiment"]["arms"]
            assert [a["name"] for a in arms] == ["incumbent", "challenger"]
            assert arms[1]["credentials"]["token"] != HTTPJSON_TOKEN  # masked
            results = client.get("/messaging/experiments/acme").json()["experiments"]
            outputs.append(str(results))
            [trial] = results
            counted = {a["name"]: (a["messages"], a["delivered"]) for a in trial["arms"]}
            # a fallback's delivery counts for the arm the message was assigned to
            assert counted == {arm: (n, n) for arm, n in by_arm.items()}

            # weight 0 in the file: the challenger gets no new message, live
            tenant({"experiment": _trial(fake.url, challenger_weight=0), "fallbacks": fallbacks})
            wait_until(
                lambda: (
                    admin.get("/messaging/config/acme").json()["channels"]["sms"]["experiment"][
                        "arms"
                    ][1]["weight"]
                    == 0
                )
            )
            stopped = _settled(client, _send(client, 30, "Cita"))
            assert {r["experimentArm"] for r in stopped} == {"incumbent"}
            assert all([a["provider"] for a in r["attempts"]] == ["console"] for r in stopped)

            # the experiment replaced by a provider in the file: ended, live, results kept
            tenant({"provider": "console"})
            wait_until(
                lambda: (
                    "experiment"
                    not in admin.get("/messaging/config/acme").json()["channels"]["sms"]
                )
            )
            [after] = _settled(client, _send(client, 1, "Hola"))
            assert "experimentArm" not in after and after["provider"] == "console"
            [ended] = client.get("/messaging/experiments/acme").json()["experiments"]
            assert (ended["name"], ended["active"]) == ("trial", False)
            kept = {a["name"]: a["messages"] for a in ended["arms"]}
            assert kept == {
                "incumbent": by_arm["incumbent"] + 30,
                "challenger": by_arm["challenger"],
            }
            outputs.append(httpx.get(f"{daemon.url}/metrics").text)
        assert daemon.stop() == 0
        outputs.append(daemon.output())
    everything = "\n".join(outputs)
    assert HTTPJSON_TOKEN not in everything and HTTPJSON_SIGNING not in everything
