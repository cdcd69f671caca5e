"""Log lines: every known secret masked, whatever field it hides in, at any number of tenants."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import structlog

from pipecored.logs import LineWriter, SecretRedactor, SecretScrubber, configure_logging


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that configures logging (onto its capsys stream, closed after it) leaves the
    defaults behind, for the tests after it in this process."""
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("token tok_live_0123456789 used", "token ****6789 used", id="long-secret"),
        pytest.param("key abcdefshort!", "key ****!", id="short-secret-fully-masked"),
        pytest.param("tok_live_0123456789tok_live_0123456789", "****6789****6789", id="adjacent"),
        pytest.param("nothing to see", "nothing to see", id="clean"),
        pytest.param("abc", "abc", id="shorter-than-any-secret"),
    ],
)
def test_scrubber_masks_each_occurrence(text: str, expected: str) -> None:
    scrub = SecretScrubber(["tok_live_0123456789", "abcdefshort", "tiny"[:3]])
    assert scrub(text) == expected


def test_the_longest_secret_wins_when_two_share_a_prefix() -> None:
    scrub = SecretScrubber(["secret-1234", "secret-1234-and-more"])
    assert scrub("x secret-1234-and-more y") == "x ****more y"


def test_scrubbing_with_thousands_of_secrets_finds_each_one() -> None:
    many = [secrets.token_urlsafe(24) for _ in range(10_000)]
    scrub = SecretScrubber(many)
    for secret in many[::997]:
        assert secret not in scrub(f"failed for {secret}, retrying")


def test_redactor_masks_known_values_and_secret_named_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    known = frozenset({"whsec_known_secret_value"})
    redactor = configure_logging(fmt="json", secrets=lambda: known)
    assert isinstance(redactor, SecretRedactor)
    log = structlog.get_logger("test")
    log.info(
        "event",
        detail={"nested": ["see whsec_known_secret_value here"]},
        authToken="plain-token-value-123",
        body="¡Hola! ñ 🍷",
    )
    line: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "whsec_known_secret_value" not in json.dumps(line)
    assert line["authToken"] == "****-123"
    assert line["body"] == "¡Hola! ñ 🍷"
    structlog.reset_defaults()


def test_a_new_configuration_masks_its_secrets_without_rebuilding_the_index() -> None:
    first = [secrets.token_urlsafe(24) for _ in range(100)]
    added = [secrets.token_urlsafe(24) for _ in range(3)]
    scrub = SecretScrubber(first).updated([*first, *added])
    for secret in [first[0], *added]:
        assert scrub(f"{secret}!") == f"****{secret[-4:]}!"
    # one of the added secrets inside an indexed one's match: the longer, leftmost one wins
    assert scrub(f"<{first[1]}{added[0]}>") == f"<****{first[1][-4:]}****{added[0][-4:]}>"


def test_many_new_secrets_rebuild_the_index() -> None:
    scrub = SecretScrubber(["tok_live_0123456789"])
    many = [secrets.token_urlsafe(24) for _ in range(SecretScrubber.MAX_EXTRA + 1)]
    rebuilt = scrub.updated(many)
    assert all(secret not in rebuilt(f"x{secret}y") for secret in many)
    # the rebuilt index holds only the current secrets
    assert rebuilt("tok_live_0123456789") == "tok_live_0123456789"


def test_a_json_line_is_scrubbed_whole_and_stays_json(capsys: pytest.CaptureFixture[str]) -> None:
    quoted = 'pa"ss\\word-with-escapes'
    plain = "whsec_known_secret_value"
    configure_logging(fmt="json", secrets=lambda: frozenset({quoted, plain}))
    structlog.get_logger("test").warning(
        "provider.error", error=f"bad credentials {quoted} / {plain}", extra={"k": [quoted]}
    )
    out = capsys.readouterr().out.strip().splitlines()[-1]
    line: dict[str, Any] = json.loads(out)  # the masks did not cut an escape in two
    rendered = json.dumps(line, ensure_ascii=False)
    assert quoted not in rendered and plain not in rendered
    assert line["error"] == "bad credentials **** / ****alue"
    structlog.reset_defaults()


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_secret_under_a_nested_key_is_masked(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # none of these values is a known secret: only the key names say what they are
    configure_logging(fmt=fmt, secrets=lambda: frozenset())
    structlog.get_logger("test").warning(
        "provider.request",
        request={
            "headers": {"Authorization": "Basic QUMxMjM0NTY3ODk6c2VjcmV0LXRva2Vu"},
            "form": [{"apiKey": "nested-api-key-value-1"}, {"To": "+34600111222"}],
        },
        credentials={"authToken": "auth-token-value-0001", "accountSid": "AC123"},
        secrets={"signing": ["whsec-in-a-list-0001"]},
    )
    out = capsys.readouterr().out
    for value in (
        "QUMxMjM0NTY3ODk6c2VjcmV0LXRva2Vu",
        "nested-api-key-value-1",
        "auth-token-value-0001",
        "whsec-in-a-list-0001",
    ):
        assert value not in out, value
    assert "+34600111222" in out and "AC123" in out  # what is not a secret is kept
    structlog.reset_defaults()


def test_nested_masking_leaves_the_callers_objects_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(fmt="json", secrets=lambda: frozenset())
    headers = {"Authorization": "Bearer caller-owned-token-01"}
    structlog.get_logger("test").info("event", request={"headers": headers})
    assert "caller-owned-token-01" not in capsys.readouterr().out
    assert headers == {"Authorization": "Bearer caller-owned-token-01"}
    structlog.reset_defaults()


def test_a_json_line_masks_the_encoded_forms_of_known_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = 'tw/tok+en"\\&=% 42'
    pair = base64.b64encode(f"AC0123456789:{secret}".encode()).decode()
    configure_logging(fmt="json", secrets=lambda: frozenset({secret}))
    structlog.get_logger("test").warning(
        "provider.error",
        error=f"echo: Authorization: Basic {pair}; body Token={quote(secret, safe='')}",
        answer=json.dumps({"token": secret}),  # JSON text inside the JSON line: escaped twice
    )
    out = capsys.readouterr().out.strip().splitlines()[-1]
    line: dict[str, Any] = json.loads(out)
    assert pair[18:-3] not in out
    assert quote(secret, safe="") not in out
    assert secret not in json.dumps(line, ensure_ascii=False)
    assert json.loads(line["answer"]) == {"token": "****"}
    structlog.reset_defaults()


class _Recording(io.StringIO):
    """A file that keeps each ``write()`` it is handed, as a file that writes through (``python
    -u``) turns each into a system call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def test_the_lines_of_a_loop_turn_are_one_write() -> None:
    file = _Recording()
    writer = LineWriter(file)
    for n in range(3):
        writer.msg(f"line {n} ¡ñ 🍷")
    assert file.writes == []  # not before the turn ends
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert file.writes == ["line 0 ¡ñ 🍷\nline 1 ¡ñ 🍷\nline 2 ¡ñ 🍷\n"]
    writer.msg("next turn")
    await asyncio.sleep(0)
    assert file.writes[1:] == ["next turn\n"]


async def test_a_line_from_another_thread_is_written_at_once_after_those_waiting() -> None:
    file = _Recording()
    writer = LineWriter(file)
    writer.msg("from the loop")
    thread = threading.Thread(target=writer.msg, args=("from a thread",))
    thread.start()
    thread.join()
    assert file.getvalue() == "from the loop\nfrom a thread\n"
    await asyncio.sleep(0)
    assert file.getvalue() == "from the loop\nfrom a thread\n"  # nothing twice


def test_lines_a_stopped_loop_left_waiting_go_with_the_next_loop_s_turn() -> None:
    file = _Recording()
    writer = LineWriter(file)
    stopped = asyncio.new_event_loop()
    stopped.call_soon(writer.msg, "logged as the loop stopped")
    stopped.call_soon(stopped.stop)
    stopped.run_forever()
    stopped.close()  # its scheduled write never runs
    assert file.getvalue() == ""

    async def later() -> None:
        writer.msg("in the next loop")
        await asyncio.sleep(0)

    asyncio.run(later())
    assert file.getvalue() == "logged as the loop stopped\nin the next loop\n"


def test_lines_waiting_at_exit_are_written_to_an_unbuffered_stdout() -> None:
    script = (
        "import asyncio, structlog\n"
        "from pipecored.logs import configure_logging\n"
        "configure_logging(fmt='json', secrets=lambda: frozenset())\n"
        "loop = asyncio.new_event_loop()\n"
        "log = structlog.get_logger('t')\n"
        "loop.call_soon(lambda: log.info('last.words', text='adiós 👋'))\n"
        "loop.call_soon(loop.stop)\n"
        "loop.run_forever()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert done.stderr == b""
    (line,) = done.stdout.decode("utf-8").splitlines()
    assert json.loads(line)["event"] == "last.words"
    assert json.loads(line)["text"] == "adiós 👋"


def test_a_line_with_a_lone_surrogate_is_written_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(fmt="json", secrets=lambda: frozenset())
    structlog.get_logger("test").info("event", provider_id="hj\ud800", name="Ñandú 🍷", n=2**70)
    out = capsys.readouterr().out.strip().splitlines()[-1]
    out.encode("utf-8")  # it has a UTF-8 form
    line = json.loads(out)
    assert (line["provider_id"], line["name"], line["n"]) == ("hj\ud800", "Ñandú 🍷", 2**70)


def test_a_line_orjson_refuses_for_a_big_integer_keeps_its_text_as_utf8(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(fmt="json", secrets=lambda: frozenset())
    structlog.get_logger("test").info("event", name="Ñandú 🍷", n=2**70)
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert "Ñandú 🍷" in out
    assert json.loads(out)["n"] == 2**70
