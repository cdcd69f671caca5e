"""A channel's experiment in the configuration (SPEC section 10): what ``pipecored check`` says
of each mistake (the field's path), and the routes a valid one gives webhooks, delivery and the
checks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipecored.api.serializers import _channel_view
from pipecored.cli import main
from pipecored.config.loader import parse_tenant, parse_yaml
from pipecored.config.model import ChannelConfig, ExperimentArmConfig, ExperimentConfig
from pipecored.plugins import LoadedProviders

TWILIO = '{accountSid: AC1, authToken: tw-s3cret, phoneNumber: "+15005550006"}'
HTTPJSON = "{token: hj-s3cret, signingSecret: hj-signing}"


def _tenant_file(arms: str, *, extra: str = "", channel: str = "sms") -> str:
    return textwrap.dedent(
        """\
        name: Acme
        channels:
          {channel}:
        {extra}    experiment:
              name: trial
              arms:
        {arms}"""
    ).format(
        channel=channel,
        extra=textwrap.indent(extra, "    "),
        arms=textwrap.indent(textwrap.dedent(arms), "        "),
    )


GOOD_ARMS = f"""\
- {{name: incumbent, weight: 90, provider: twilio, credentials: {TWILIO}}}
- {{name: challenger, weight: 10, provider: console}}
"""
FILE = "tenants/acme.yaml: channels.sms"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            _tenant_file(
                """\
                - {name: a, weight: 1, provider: console}
                - {name: b, weight: 1, provider: nosuch}
                """
            ),
            [
                f"{FILE}.experiment.arms.1.provider: unknown provider 'nosuch' "
                "(loaded: console, httpjson, meta, resend, sendgrid, twilio)"
            ],
            id="unknown-provider",
        ),
        pytest.param(
            _tenant_file(
                """\
                - {name: a, weight: 0, provider: console}
                - {name: b, weight: 0, provider: twilio}
                """
            ),
            [f"{FILE}.experiment.arms: at least one arm needs a weight above 0"],
            id="all-weights-0",
        ),
        pytest.param(
            _tenant_file(
                f"""\
                - {{name: a, weight: 1, provider: console}}
                - {{name: a, weight: 1, provider: twilio, credentials: {TWILIO}}}
                """
            ),
            [f"{FILE}.experiment.arms.1.name: arm 'a' is listed twice"],
            id="duplicate-arm-names",
        ),
        pytest.param(
            _tenant_file(
                f"""\
                - {{name: a, weight: 1, provider: twilio, credentials: {TWILIO}}}
                - {{name: b, weight: 1, provider: twilio, credentials: {TWILIO}}}
                """
            ),
            [
                f"{FILE}.experiment.arms.1.provider: provider 'twilio' is in arm 'a' already "
                "(an experiment compares providers: one arm each)"
            ],
            id="one-provider-in-two-arms",
        ),
        pytest.param(
            _tenant_file(
                """\
                - {name: a, weight: 1, provider: console}
                - {name: b, weight: 1, provider: twilio, credentials: {accountSid: AC1}}
                """
            ),
            [
                f"{FILE}.experiment.arms.1.credentials.authToken: required by provider twilio",
                f"{FILE}.experiment.arms.1.credentials.phoneNumber: required by provider twilio",
            ],
            id="an-arm's-missing-credentials",
        ),
        pytest.param(
            _tenant_file(
                f"""\
                - {{name: a, weight: 1, provider: console}}
                - {{name: b, weight: 1, provider: twilio, credentials: {TWILIO}}}
                """,
                channel="email",
            ),
            [
                "tenants/acme.yaml: channels.email.experiment.arms.1.provider: provider twilio "
                "does not serve email (it serves sms, whatsapp)"
            ],
            id="arm-provider-does-not-serve-the-channel",
        ),
        pytest.param(
            _tenant_file(GOOD_ARMS, extra="provider: console\n"),
            [f"{FILE}.provider: an experiment's arms name the providers; leave it out"],
            id="provider-beside-an-experiment",
        ),
        pytest.param(
            _tenant_file(GOOD_ARMS, extra="credentials: {token: x}\n"),
            [f"{FILE}.credentials: an experiment's arms name the providers; leave it out"],
            id="credentials-beside-an-experiment",
        ),
        pytest.param(
            _tenant_file("[]\n"),
            [f"{FILE}.experiment.arms: List should have at least 1 item"],
            id="no-arms",
        ),
        pytest.param(
            _tenant_file(
                """\
                - {name: A B, weight: -1, provider: console}
                - {weight: 1, provider: twilio, credentials: {}}
                """
            ),
            [
                f"{FILE}.experiment.arms.0.name: "
                "String should match pattern '^[a-z0-9_-]{1,32}$'",
                f"{FILE}.experiment.arms.0.weight: Input should be greater than or equal to 0",
                f"{FILE}.experiment.arms.1.name: Field required",
            ],
            id="bad-arms",
        ),
        pytest.param(
            _tenant_file(GOOD_ARMS).replace("name: trial", "name: Trial 1"),
            [
                f"{FILE}.experiment.name: String should match pattern '^[a-z0-9_-]{{1,64}}$'",
            ],
            id="bad-experiment-name",
        ),
    ],
)
def test_check_names_the_field_of_each_mistake(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    providers: LoadedProviders,
    text: str,
    expected: list[str],
) -> None:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "tenants" / "acme.yaml").write_text(text, encoding="utf-8")
    code = main(["check", "--config", str(tmp_path)])
    assert (code, sorted(capsys.readouterr().out.splitlines())) == (1, sorted(expected))


def _channel(providers: LoadedProviders, text: str) -> ChannelConfig:
    tenant = parse_tenant(
        parse_yaml(text, display="tenants/acme.yaml"),
        tenant_id="acme",
        providers=providers,
        env={"ACME_TWILIO_TOKEN": "tw-from-env"},
        display="tenants/acme.yaml",
    )
    return tenant.channels["sms"]


def test_the_routes_of_an_experiment(providers: LoadedProviders) -> None:
    channel = _channel(
        providers,
        _tenant_file(
            GOOD_ARMS.replace("tw-s3cret", '"${ACME_TWILIO_TOKEN}"'),
            extra=f"fallbacks:\n  - {{provider: httpjson, credentials: {HTTPJSON}}}\n",
        ),
    )
    assert channel.experiment is not None
    incumbent, challenger = channel.experiment.arms
    assert incumbent.credentials["authToken"] == "tw-from-env"  # ${ENV} in an arm
    # the channel's own provider (a callback without provider=, the config view) is the
    # leading arm's
    assert (channel.provider, channel.credentials) == ("twilio", incumbent.credentials)
    # every route, for webhooks, circuits and the checks
    assert channel.route_providers == ("twilio", "console", "httpjson")
    assert channel.route_for("console") is challenger
    assert channel.serves_through("httpjson") and not channel.serves_through("meta")
    assert [label for label, _ in channel.labelled_routes()] == [
        ".experiment.arms.0",
        ".experiment.arms.1",
        ".fallbacks.0",
    ]
    # a message's own: its arm's provider, then the fallbacks
    assert [r.provider for r in channel.routes_for("challenger")] == ["console", "httpjson"]
    assert [r.provider for r in channel.routes_for("incumbent")] == ["twilio", "httpjson"]
    # an arm removed since the message was accepted: the leading arm's
    assert [r.provider for r in channel.routes_for("gone")] == ["twilio", "httpjson"]


def test_the_config_view_masks_every_arm_s_secrets(providers: LoadedProviders) -> None:
    channel = _channel(
        providers,
        _tenant_file(
            f"""\
            - {{name: incumbent, weight: 3, provider: twilio, credentials: {TWILIO}}}
            - {{name: challenger, weight: 1, provider: httpjson, credentials: {HTTPJSON},
                baseUrl: "http://127.0.0.1:9"}}
            """
        ),
    )
    view = _channel_view(channel, providers)
    text = repr(view)
    for secret in ("tw-s3cret", "hj-s3cret", "hj-signing"):
        assert secret not in text
    arms = view["experiment"]["arms"]
    assert [(a["name"], a["weight"], a["provider"]) for a in arms] == [
        ("incumbent", 3, "twilio"),
        ("challenger", 1, "httpjson"),
    ]
    assert arms[0]["credentials"]["accountSid"] == "AC1"  # not a secret
    assert arms[1]["baseUrl"] == "http://127.0.0.1:9"


def test_a_channel_built_from_models_takes_its_leading_arm() -> None:
    experiment = ExperimentConfig(
        name="trial",
        arms=(
            ExperimentArmConfig(name="a", weight=1, provider="console"),
            ExperimentArmConfig(name="b", weight=2, provider="twilio", credentials={"x": "y"}),
        ),
    )
    channel = ChannelConfig.model_validate({"experiment": experiment})
    assert (channel.provider, channel.credentials) == ("twilio", {"x": "y"})
