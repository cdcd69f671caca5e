"""Parsing and checking configuration files: what ``pipecored check`` prints for each mistake
(``FILE: path.to.key: message``, exit 1) and what a valid file turns into."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from pipecored.cli import main
from pipecored.config.loader import check_config_dir, parse_daemon_config, parse_tenant, parse_yaml
from pipecored.config.model import DaemonConfig, TenantConfig, parse_duration
from pipecored.errors import ConfigError
from pipecored.plugins import LoadedProviders
from tests.conftest import example_config

BUILTINS = "console, meta, resend, sendgrid, twilio"
TWILIO_TAKES = "accountSid, authToken, phoneNumber, whatsappNumber, messagingServiceSid"
DURATION = "expected a duration such as 200ms, 1s, 5m or 24h"
UNSET = "PIPECORE_TEST_UNSET_VARIABLE"
ACME_AUTH_TOKEN = "tenants/acme.yaml: channels.sms.credentials.authToken"

ACME_SMS = """\
name: Acme
apiKeys: [acme-key]
channels:
  sms:
    provider: twilio
    credentials: {accountSid: AC1, authToken: tok, phoneNumber: "+15005550006"}
"""


def _write(root: Path, files: Mapping[str, str]) -> Path:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check", "--config", str(root)])
    return code, capsys.readouterr().out.splitlines()


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET, raising=False)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("  sms:\n", "  sms:\n    isActiv: true\n")},
            ["tenants/acme.yaml: channels.sms.isActiv: unknown key"],
            id="typo-in-channel-key",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("apiKeys", "apikeys")},
            ["tenants/acme.yaml: apikeys: unknown key"],
            id="typo-in-top-level-key",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("  sms:\n", "  sms:\n    isActive: maybe\n")},
            [
                "tenants/acme.yaml: channels.sms.isActive: "
                "Input should be a valid boolean, unable to interpret input"
            ],
            id="wrong-type-bool",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("[acme-key]", "acme-key")},
            ["tenants/acme.yaml: apiKeys: Input should be a list"],
            id="wrong-type-list",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("[acme-key]", '[""]')},
            ["tenants/acme.yaml: apiKeys.0: String should have at least 1 character"],
            id="empty-api-key",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS + "  telegram: {provider: console}\n"},
            [
                "tenants/acme.yaml: channels.telegram: unknown channel 'telegram'"
                " (declared: email, sms, whatsapp)"
            ],
            id="unknown-channel",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("  sms:\n", "  sms:\n    baseUrl: ftp://x\n")},
            ["tenants/acme.yaml: channels.sms.baseUrl: expected an http:// or https:// URL"],
            id="bad-url",
        ),
        pytest.param(
            {"pipecored.yaml": "delivery: {timeout: 5 minutes}\n"},
            [f"pipecored.yaml: delivery.timeout: {DURATION}"],
            id="duration-in-words",
        ),
        pytest.param(
            {"pipecored.yaml": "delivery: {timeout: .inf}\n"},
            [f"pipecored.yaml: delivery.timeout: {DURATION}"],
            id="duration-infinite",
        ),
        pytest.param(
            # YAML 1.1 reads 1:30 as the number 90; a duration must say its unit or be seconds.
            {"pipecored.yaml": "delivery: {retryBackoff: {initial: 1:30}}\n"},
            [f"pipecored.yaml: delivery.retryBackoff.initial: {DURATION}"],
            id="duration-sexagesimal",
        ),
        pytest.param(
            {"pipecored.yaml": "delivery: {maxAge: -5}\n"},
            ["pipecored.yaml: delivery.maxAge: Input should be greater than or equal to 0"],
            id="duration-negative",
        ),
        pytest.param(
            {"pipecored.yaml": "server: {port: 80800}\n"},
            ["pipecored.yaml: server.port: Input should be less than or equal to 65535"],
            id="port-out-of-range",
        ),
        pytest.param(
            {"pipecored.yaml": "providers: {twillio: {baseUrl: 'https://api.twilio.com'}}\n"},
            ["pipecored.yaml: providers.twillio: unknown provider 'twillio'"],
            id="unknown-provider-defaults",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("authToken: tok", f'authToken: "${{{UNSET}}}"')},
            # One line: the missing variable, not also "authToken required" for the blank.
            [
                "tenants/acme.yaml: channels.sms.credentials.authToken: "
                f"environment variable {UNSET} is not set"
            ],
            id="missing-env-in-credential",
        ),
        pytest.param(
            {"pipecored.yaml": f'auth: {{adminKeys: ["${{{UNSET}}}"]}}\n'},
            [f"pipecored.yaml: auth.adminKeys.0: environment variable {UNSET} is not set"],
            id="missing-env-in-daemon",
        ),
        pytest.param(
            {"tenants/acme.yaml": "name: Acme\nchannels: {sms: [\n"},
            ["tenants/acme.yaml: (root): line 3, column 1: did not find expected node content"],
            id="invalid-yaml",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS + "  sms: {provider: console}\n"},
            ["tenants/acme.yaml: (root): line 7, column 3: duplicate key 'sms'"],
            id="duplicate-key",
        ),
        pytest.param(
            {"tenants/acme.yaml": "- name\n- Acme\n"},
            ["tenants/acme.yaml: (root): expected a mapping (name, apiKeys, channels)"],
            id="tenant-not-a-mapping",
        ),
        pytest.param(
            {"tenants/acme.yaml": ""},
            ["tenants/acme.yaml: (root): expected a mapping (name, apiKeys, channels)"],
            id="tenant-empty",
        ),
        pytest.param(
            {"pipecored.yaml": "just a string\n"},
            ["pipecored.yaml: (root): expected a mapping of settings"],
            id="daemon-not-a-mapping",
        ),
        pytest.param(
            {"tenants/Acme Corp.yaml": ACME_SMS},
            [
                "tenants/Acme Corp.yaml: (root): "
                "tenant id (the file name) must match [a-z0-9_-]{1,64}"
            ],
            id="tenant-id-uppercase-space",
        ),
        pytest.param(
            {f"tenants/{'a' * 65}.yaml": ACME_SMS},
            [
                f"tenants/{'a' * 65}.yaml: (root): "
                "tenant id (the file name) must match [a-z0-9_-]{1,64}"
            ],
            id="tenant-id-too-long",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("provider: twilio", "provider: twillio")},
            [
                "tenants/acme.yaml: channels.sms.provider: "
                f"unknown provider 'twillio' (loaded: {BUILTINS})"
            ],
            id="unknown-provider",
        ),
        pytest.param(
            {
                "tenants/acme.yaml": """\
                    name: Acme
                    channels:
                      sms:
                        provider: resend
                        credentials: {apiKey: re_x, fromEmail: a@acme.com}
                    """
            },
            [
                "tenants/acme.yaml: channels.sms.provider: "
                "provider resend does not serve sms (it serves email)"
            ],
            id="provider-does-not-serve-channel",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("authToken: tok, ", "")},
            ["tenants/acme.yaml: channels.sms.credentials.authToken: required by provider twilio"],
            id="missing-credential",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace("authToken", "authTokn")},
            [
                f"{ACME_AUTH_TOKEN}: required by provider twilio",
                "tenants/acme.yaml: channels.sms.credentials.authTokn: "
                f"unknown credential for provider twilio (it takes: {TWILIO_TAKES})",
            ],
            id="unknown-credential",
        ),
        pytest.param(
            {"tenants/acme.yaml": ACME_SMS.replace(', phoneNumber: "+15005550006"', "")},
            [
                "tenants/acme.yaml: channels.sms.credentials.phoneNumber: "
                "required by provider twilio"
            ],
            id="twilio-sms-needs-phone-number",
        ),
        pytest.param(
            {
                "tenants/acme.yaml": """\
                    name: Acme
                    channels:
                      whatsapp:
                        provider: twilio
                        credentials: {accountSid: AC1, authToken: tok, phoneNumber: "+15005550006"}
                    """
            },
            [
                "tenants/acme.yaml: channels.whatsapp.credentials.whatsappNumber: "
                "required by provider twilio"
            ],
            id="twilio-whatsapp-needs-whatsapp-number",
        ),
        pytest.param(
            {
                "tenants/acme.yaml": """\
                    name: Acme
                    channels:
                      whatsapp:
                        provider: twilio
                        credentials: {accountSid: AC1, authToken: tok, whatsappNumber: "+1415"}
                        fallbacks:
                          - provider: meta
                            credentials: {accessToken: t, phoneNumberId: "1", verifyToken: v}
                          - provider: twillio
                          - provider: resend
                            credentials: {apiKey: re_x, fromEmail: a@acme.com, authToken: x}
                    """
            },
            [
                "tenants/acme.yaml: channels.whatsapp.fallbacks.1.provider: "
                f"unknown provider 'twillio' (loaded: {BUILTINS})",
                "tenants/acme.yaml: channels.whatsapp.fallbacks.2.provider: "
                "provider resend does not serve whatsapp (it serves email)",
                "tenants/acme.yaml: channels.whatsapp.fallbacks.2.credentials.authToken: "
                "unknown credential for provider resend "
                "(it takes: apiKey, fromEmail, webhookSecret)",
            ],
            id="fallbacks",
        ),
        pytest.param(
            {
                "tenants/acme.yaml": ACME_SMS.replace("authToken: tok, ", "")
                + "  email: {provider: console, isActiv: true}\n"
            },
            # A typo in one channel must not hide a missing credential in another.
            [
                "tenants/acme.yaml: channels.email.isActiv: unknown key",
                f"{ACME_AUTH_TOKEN}: required by provider twilio",
            ],
            id="several-errors-in-one-file",
        ),
        pytest.param(
            {
                "tenants/acme.yaml": ACME_SMS,
                "tenants/bravo.yaml": ACME_SMS.replace("Acme", "Bravo"),
            },
            [
                "tenants/bravo.yaml: apiKeys.0: "
                "this key already belongs to another tenant or is an admin key"
            ],
            id="api-key-of-two-tenants",
        ),
        pytest.param(
            {"pipecored.yaml": "auth: {adminKeys: [acme-key]}\n", "tenants/acme.yaml": ACME_SMS},
            [
                "tenants/acme.yaml: apiKeys.0: "
                "this key already belongs to another tenant or is an admin key"
            ],
            id="api-key-is-an-admin-key",
        ),
    ],
)
def test_check_reports_each_mistake(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    expected: list[str],
) -> None:
    code, lines = _check(_write(tmp_path, files), capsys)
    assert (code, sorted(lines)) == (1, sorted(expected))


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"tenants/acme.yaml": ACME_SMS}, id="twilio-sms"),
        pytest.param(
            {
                "tenants/acme.yaml": """\
                    name: Acme
                    channels:
                      whatsapp:
                        provider: twilio
                        credentials: {accountSid: AC1, authToken: t, whatsappNumber: "whatsapp:+1"}
                    """
            },
            id="twilio-whatsapp-without-phone-number",
        ),
        pytest.param({"tenants/a_b-9.yaml": ACME_SMS}, id="tenant-id-charset"),
        pytest.param({"tenants/acme.yaml": "name: Acme\n"}, id="no-channels"),
        pytest.param({"pipecored.yaml": "", "tenants/acme.yaml": ACME_SMS}, id="empty-daemon"),
        pytest.param(
            {
                "tenants/acme.yaml": ACME_SMS,
                "tenants/notes.txt": "not: [yaml",
                "tenants/.x.yaml": "[",
            },
            id="other-files-ignored",
        ),
    ],
)
def test_check_accepts_valid_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str]
) -> None:
    root = _write(tmp_path, files)
    assert _check(root, capsys) == (0, [f"{root}: ok"])


def test_check_on_a_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert _check(missing, capsys) == (1, [f"{missing}: (root): not a directory"])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("200ms", 0.2, id="ms"),
        pytest.param("1s", 1.0, id="s"),
        pytest.param("5m", 300.0, id="m"),
        pytest.param("24h", 86400.0, id="h"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param(30, 30.0, id="int"),
        pytest.param(0.25, 0.25, id="float"),
        pytest.param("30", 30.0, id="numeric-string"),
    ],
)
def test_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("5 minutes", id="words"),
        pytest.param("5x", id="unknown-unit"),
        pytest.param("-1s", id="negative-string"),
        pytest.param(True, id="bool"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(float("nan"), id="nan"),
        pytest.param("", id="empty"),
    ],
)
def test_not_a_duration(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)


def _daemon(text: str, env: Mapping[str, str] | None = None) -> DaemonConfig:
    display = "pipecored.yaml"
    return parse_daemon_config(parse_yaml(text, display=display), env=env or {}, display=display)


def _tenant(
    text: str, providers: LoadedProviders, env: Mapping[str, str] | None = None
) -> TenantConfig:
    display = "tenants/acme.yaml"
    return parse_tenant(
        parse_yaml(textwrap.dedent(text), display=display),
        tenant_id="acme",
        providers=providers,
        env=env or {},
        display=display,
    )


def test_durations_in_the_daemon_file() -> None:
    delivery = _daemon(
        "delivery: {timeout: 200ms, maxAge: 24h, retryBackoff: {initial: 1s, max: 5m},"
        " circuit: {cooldown: 45}}\n"
    ).delivery
    assert (
        delivery.timeout,
        delivery.max_age,
        delivery.retry_backoff.initial,
        delivery.retry_backoff.max,
        delivery.circuit.cooldown,
    ) == (0.2, 86400.0, 1.0, 300.0, 45.0)


def test_env_substitution_in_any_string(providers: LoadedProviders) -> None:
    env = {"KEY": "k-123", "TOKEN": "tok-456", "HOST": "gw.example.com", "NAME": "Acme"}
    tenant = _tenant(
        """\
        name: ${NAME} Corp
        apiKeys: ["${KEY}", "plain"]
        channels:
          sms:
            provider: httpjson
            baseUrl: https://${HOST}/v1
            credentials: {token: "${TOKEN}", sender: "${NAME}-${KEY}"}
        """,
        providers,
        env,
    )
    assert tenant.name == "Acme Corp"
    assert tenant.api_keys == ("k-123", "plain")
    sms = tenant.channels["sms"]
    assert sms.base_url == "https://gw.example.com/v1"
    assert sms.credentials == {"token": "tok-456", "sender": "Acme-k-123"}


def test_env_substitution_feeds_typed_fields() -> None:
    daemon = _daemon(
        'server: {port: "${PORT}"}\ndelivery: {timeout: "${TIMEOUT}"}\n',
        {"PORT": "9090", "TIMEOUT": "3s"},
    )
    assert (daemon.server.port, daemon.delivery.timeout) == (9090, 3.0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, "fallback", id="unset-uses-default"),
        pytest.param({"ADMIN": ""}, "fallback", id="empty-uses-default"),
        pytest.param({"ADMIN": "from-env"}, "from-env", id="set-wins"),
    ],
)
def test_env_default(env: dict[str, str], expected: str) -> None:
    daemon = _daemon('auth: {adminKeys: ["${ADMIN:-fallback}"]}\n', env)
    assert daemon.auth.admin_keys == (expected,)


def test_missing_env_is_an_error_naming_the_variable(providers: LoadedProviders) -> None:
    with pytest.raises(ConfigError) as caught:
        _tenant('name: Acme\napiKeys: ["${ACME_KEY}", "${OTHER}"]\n', providers, {"OTHER": "x"})
    assert [str(i) for i in caught.value.issues] == [
        "tenants/acme.yaml: apiKeys.0: environment variable ACME_KEY is not set"
    ]


def test_numbers_keep_the_text_that_was_written(providers: LoadedProviders) -> None:
    """YAML 1.1 reads +15005550006 as an int (the plus is lost) and 0123 as octal 83: a
    credential must be exactly what the operator wrote, quoted or not."""
    tenant = _tenant(
        """\
        name: 0123
        channels:
          sms:
            provider: twilio
            credentials: {accountSid: AC1, authToken: 1_000, phoneNumber: +15005550006}
        """,
        providers,
    )
    assert tenant.name == "0123"
    assert tenant.channels["sms"].credentials["phoneNumber"] == "+15005550006"
    assert tenant.channels["sms"].credentials["authToken"] == "1_000"
    assert _daemon("server: {port: +8080}\ndelivery: {maxAttempts: 3}\n").server.port == 8080


def test_yaml_merge_keys_may_override(providers: LoadedProviders) -> None:
    tenant = _tenant(
        """\
        name: Acme
        channels:
          sms: &console {provider: console, isActive: true}
          email:
            <<: *console
            isActive: false
        """,
        providers,
    )
    assert tenant.channels["email"].is_active is False
    assert tenant.channels["sms"].is_active is True


def test_the_example_config_parses(providers: LoadedProviders, tmp_path: Path) -> None:
    config = example_config(tmp_path / "config")
    assert check_config_dir(config, providers=providers, env={}) == []


def test_check_refuses_a_template_mapped_to_a_provider_nobody_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = ACME_SMS + (
        "templates:\n"
        "  order_confirmation:\n"
        "    es:\n"
        "      twillio: {contentSid: HX0}\n"
        '      text: "Hola {{1}}"\n'
    )
    code, lines = _check(_write(tmp_path, {"tenants/acme.yaml": tenant}), capsys)
    assert code == 1
    assert lines == [
        "tenants/acme.yaml: templates.order_confirmation.es.twillio: unknown provider 'twillio'"
        " (loaded: console, meta, resend, sendgrid, twilio; or text)"
    ]
