"""Issue 13 item 7: text a peer wrote never acts on a person's terminal.

A hostile ``additional-info`` (line breaks that draw a forged request and a second prompt,
the C1 CSI U+009B, a bidi override) travels ALICE -> primary ACMS -> partner ACMS -> DAVE's
ACMC over real sockets and reaches the interactive decider: every one of its characters is
shown escaped on the request's own line.  The same holds for the acmc console output, the
ladders (send, demo, ``mcacm ladder``) and console-format logs; JSON output stays JSON.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import unicodedata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import Addressee, Party, ProfileUpdateRequest, new_transaction_id
from mcacm_sip.cli.logs import ConsoleFormatter, JsonFormatter
from mcacm_sip.cli.main import Output
from mcacm_sip.core.events import ReportKind, ReportToUser
from mcacm_sip.ladder import LadderEvent, render
from mcacm_sip.runtime.acmc import InteractiveDecider
from mcacm_sip.runtime.lab import ALICE, DAVE, Lab, profile_xml
from mcacm_sip.text import printable

FORGED = ("\n\nprofile-update-request  (transaction forged)\n"
          "  requester:      sip:chief@primary.example\n"
          "  additional info: urgent, approve\n"
          "approve or reject? [a/r] ")
HOSTILE = "night shift" + FORGED + "\u009b2J\u202eevil"
UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def assert_inert(shown: str) -> None:
    """No character a terminal acts on, except the line breaks of our own layout."""
    for line in shown.split("\n"):
        assert not [c for c in line if unicodedata.category(c) in UNSAFE], repr(line)


def test_a_hostile_additional_info_reaches_the_interactive_decider_escaped(
        tmp_path: Path) -> None:
    """Real delivery through both ACMSs to DAVE's terminal (InteractiveDecider on buffers):
    one request block, one prompt, the forged lines and controls visible as escapes on the
    additional-info line.  Before the fix the output held a second request block and prompt."""
    stdout = io.StringIO()
    decider = InteractiveDecider(io.StringIO("r\nforged\n"), stdout)

    async def main() -> None:
        async with Lab.start(tmp_path, "udp", dave=decider) as lab:
            migrated = await lab.migrate_mike(15.0)
            profile = profile_from_xml(profile_xml("Mike\u009b31m red\n approve"))
            out = await lab.alice.profile_update(
                target=Addressee(DAVE), migrated_user_id=migrated, profile=profile,
                additional_info=HOSTILE, timeout=15.0)
            assert out.result is not None  # DAVE's rejection came back

    asyncio.run(main())
    shown = stdout.getvalue()
    assert_inert(shown)
    lines = shown.split("\n")
    assert sum(line.startswith("profile-update-request") for line in lines) == 1
    assert shown.count("approve or reject?") == 2  # the forged one (escaped) and ours
    info = [line for line in lines if line.startswith("  additional info:")]
    assert len(info) == 1 and "\\n\\nprofile-update-request" in info[0]
    assert "\\x9b2J\\u202eevil" in info[0]
    assert sum(line.startswith("approve or reject?") for line in lines) == 1
    assert "\\x9b31m" in shown  # the profile summary's text too


def test_the_acmc_console_output_escapes_report_texts() -> None:
    stream = io.StringIO()
    Output(False, stream).report(ReportToUser("t1", ReportKind.FAILED, None,
                                        "403 not-authorised: \x1b[2Jx\nforged line"))
    assert stream.getvalue() == "t1: failed: 403 not-authorised: \\x1b[2Jx\\nforged line\n"


def test_json_output_stays_json() -> None:
    stream = io.StringIO()
    request = ProfileUpdateRequest(new_transaction_id(), Party(ALICE), Addressee(DAVE),
                                   "sip:mike-1@partner.example",
                                   profile_from_xml(profile_xml("Mike")), HOSTILE)
    Output(True, stream).report(ReportToUser(request.transaction_id, ReportKind.FAILED, request,
                                       HOSTILE))
    line = stream.getvalue()
    assert line.count("\n") == 1 and "\x9b" not in line  # json.dumps escapes (ASCII)
    doc = json.loads(line)
    assert doc["text"] == HOSTILE


def test_a_ladder_escapes_what_the_peer_wrote() -> None:
    """A reason phrase with ESC sequences and an Event header with a line feed's worth of text
    (ladders of `mcacm send`, `mcacm demo` and `mcacm ladder` all draw with render)."""
    answer = (b"SIP/2.0 200 OK\x1b[2J\x1b[31mforged\r\nCSeq: 1 MESSAGE\r\n\r\n")
    notify = b"NOTIFY sip:x SIP/2.0\r\nEvent: presence\x1b]0;title\x07\r\n\r\n"
    shown = render([LadderEvent(0.0, "a", "b", notify), LadderEvent(0.1, "b", "a", answer)],
                   {"a": "us", "b": "peer\x1b[5m"})
    assert_inert(shown)
    assert "OK\\x1b[2J\\x1b[31mforged (MESSAGE)" in shown
    assert "presence\\x1b]0;title\\x07" in shown


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("mcacm.acms.node", logging.WARNING, "", 0, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_console_logs_are_one_line_and_inert_json_logs_stay_json() -> None:
    rec = record("MESSAGE from %s refused: %s", "sip:x@y\x1b[2J", "bad\nFAKE LOG LINE",
                 call_id="c\r\n\x1b[1A", event="acm.untrusted")
    line = ConsoleFormatter().format(rec)
    assert "\n" not in line
    assert_inert(line)
    assert "sip:x@y\\x1b[2J refused: bad\\nFAKE LOG LINE" in line
    assert "call_id=c\\r\\n\\x1b[1A" in line
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["msg"].endswith("bad\nFAKE LOG LINE") and doc["call_id"] == "c\r\n\x1b[1A"


@given(st.text(st.characters(codec="utf-8")))
def test_printable_output_is_one_inert_line_and_tells_texts_apart(text: str) -> None:
    shown = printable(text)
    assert "\n" not in shown
    assert_inert(shown)
    # a backslash is doubled, so a typed "\n" never looks like an escaped line break
    assert printable(text + "\\n") != printable(text + "\n")


def test_plain_text_is_unchanged() -> None:
    for text in ("sip:alice@primary.example", "Mike (migrated); night shift", "Zoë — Müller"):
        assert printable(text) == text


def test_mcacm_send_text_output_escapes_the_answer() -> None:
    """The reason phrase and Warning text of the answer, as ``mcacm send`` prints them."""
    from mcacm_sip.cli.send_cmd import _text
    from mcacm_sip.runtime.sender import Exchange, SendSettings
    from mcacm_sip.sip.aio import Listen

    request = ProfileUpdateRequest(new_transaction_id(), Party(ALICE), Addressee(DAVE),
                                   "sip:mike-1@partner.example",
                                   profile_from_xml(profile_xml("Mike")))
    ex = Exchange(request, 0.0)
    ex.on_final(403, "Forbidden\x1b[2J", "not-authorised: \x1b[31mx\nresult      success", 0.1)
    settings = SendSettings(to="sip:acms@primary.example", role="acmc", identity=ALICE,
                            listen=Listen("udp", "127.0.0.1", 0))
    shown = _text(ex, settings, [], quiet=True)
    assert_inert(shown)
    assert "not-authorised: \\x1b[31mx\\nresult      success" in shown
    assert sum(line.strip().startswith("result") for line in shown.split("\n")) == 1


def test_a_traceback_quoting_peer_text_stays_inert() -> None:
    try:
        raise ValueError("bad value \x1b[2J\nFAKE")
    except ValueError:
        import sys

        rec = record("handler failed")
        rec.exc_info = sys.exc_info()
    shown = ConsoleFormatter().format(rec)
    assert_inert(shown)
    assert "bad value \\x1b[2J\\nFAKE" in shown and "Traceback" in shown
