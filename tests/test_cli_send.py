"""``mcacm send`` through the console script (a subprocess, as a user runs it) against real nodes
on loopback: the two-system :class:`Lab` in-process, a silent UDP socket, a fake peer ACMS that
answers with an invalid document.  Every exit code: 0, 1, 2, 3, 4 (request and answer), 5."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pki_kit import make_pki

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import Addressee
from mcacm_sip.cli.main import main
from mcacm_sip.runtime.acmc import AutoDecider
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings, TlsSettings
from mcacm_sip.runtime.config import AcmsNodeConfig
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    LOOPBACK,
    MIKE,
    PARTNER,
    PRIMARY,
    PROFILE_XML,
    Lab,
    primary_config,
)
from mcacm_sip.sip import Peer, Reply
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint

MCACM = str(Path(sys.executable).with_name("mcacm"))
ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "acm" / "corpus" / "bad"
EXAMPLE_ADD = ROOT / "examples" / "flows" / "add-user-configuration-request.xml"


async def mcacm(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        MCACM, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def with_lab(tmp_path: Path, body: Callable[[Lab], Awaitable[None]], transport: str = "udp",
             **kwargs: Any) -> None:
    async def main() -> None:
        async with Lab.start(tmp_path, transport=transport, **kwargs) as lab:  # type: ignore[arg-type]
            await body(lab)

    asyncio.run(main())


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_alice(lab: Lab, *argv: str) -> list[str]:
    """``mcacm send`` as Alice's ACMC at the lab's primary ACMS."""
    return ["send", *argv, "--to", PRIMARY, "--via", lab.primary.hop(lab.transport),
            "--requester", ALICE]


# --------------------------------------------------------------------------- 0 and 1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_add_users_as_acmc_positive_result_exit_0(transport: str, tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        code, out, err = await mcacm(*as_alice(lab, "add-user-configuration-request",
                                               "--users", MIKE, "--target", DAVE, "--json"))
        assert code == 0, out + err
        doc = json.loads(out)
        assert doc["register"] == {"status": 200}
        assert doc["sip"]["status"] == 200 and doc["transport"] == transport
        assert doc["indication"]["flow"] == "process-indication"
        assert doc["indication"]["acms"] == PARTNER
        assert doc["response"]["flow"] == "add-user-configuration-response"
        assert doc["response"]["transaction_id"] == doc["transaction_id"]
        assert doc["result"] == "success" and doc["exit"] == 0
        assert doc["response"]["users"][0]["partner_id"] == "sip:mike-1@partner.example"
        assert doc["request"]["requester"]["mc_service_id"] == ALICE
        # each step has its time; their order is asserted on the wire below (the stamps are
        # wall-clock, and the 200 to our MESSAGE may be stamped after the response MESSAGE
        # that crossed it: its awaiting task resumes later than the handler runs)
        assert set(doc["timings_ms"]) == {"register", "sip", "indication", "response", "end"}
        # REGISTER, MESSAGE, indication, response, un-REGISTER: in that order on the wire
        lines = [m["first_line"] for m in doc["messages"]]
        assert lines[0].startswith("REGISTER") and lines[-2].startswith("REGISTER")
        assert sum(line.startswith("MESSAGE") for line in lines) == 3
        # the primary ACMS learnt the mapping, as for a request from Alice's own ACMC
        assert [m.partner_id for m in lab.primary.core.mappings()] == [
            "sip:mike-1@partner.example"]

    with_lab(tmp_path, body, transport)


def test_negative_result_exit_1_readable_with_ladder(tmp_path: Path) -> None:
    profile = tmp_path / "profile.xml"
    profile.write_text(PROFILE_XML)

    async def body(lab: Lab) -> None:
        code, out, err = await mcacm(*as_alice(
            lab, "profile-update-request", "--target", DAVE, "--profile", str(profile),
            "--migrated-user", "sip:nobody@partner.example", "--info", "night shift"))
        assert code == 1, out + err
        assert "unknown-user" in out and "accepted by " + PARTNER in out
        assert "profile-update-response" in out  # the ladder names the flow
        assert "send: REGISTER" in err  # progress on stderr, data on stdout
        assert "send:" not in out

    with_lab(tmp_path, body)


def test_rejected_by_the_deciding_user_exit_1(tmp_path: Path) -> None:
    profile = tmp_path / "profile.xml"
    profile.write_text(PROFILE_XML)

    async def body(lab: Lab) -> None:
        added = await lab.alice.add_users((MIKE,), Addressee(DAVE), timeout=10)
        assert added.result == "success"
        code, out, err = await mcacm(*as_alice(
            lab, "profile-update-request", "--target", DAVE, "--profile", str(profile),
            "--migrated-user", "sip:mike-1@partner.example", "--json", "-q"))
        assert code == 1, out + err
        assert json.loads(out)["result"] == "rejected-by-user"
        assert err == ""  # -q: no progress

    with_lab(tmp_path, body, dave=AutoDecider(False, "not today"))


# --------------------------------------------------------------------------- 2


def test_usage_error_exit_2_through_the_console_script() -> None:
    proc = subprocess.run([MCACM, "send", "add-user-configuration-request", "--requester",
                           ALICE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--to" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(("argv", "says"), [
    (["profile-update", "--to", "sip:acms@127.0.0.1:5"], "invalid choice"),
    (["--to", "sip:acms@127.0.0.1:5"], "give FLOW"),
    (["profile-update-request", "--to", "sip:acms@127.0.0.1:5",
      "--requester", ALICE, "--target", DAVE, "--migrated-user", MIKE], "needs --profile"),
    (["profile-update-request", "--to", "sip:acms@127.0.0.1:5", "--profile", "p.xml",
      "--requester", ALICE, "--migrated-user", MIKE], "--target or --target-fa"),
    (["add-user-configuration-request", "--to", "sip:acms@127.0.0.1:5",
      "--requester", ALICE, "--users", MIKE, "--as", "acms"], "needs --psi"),
    (["add-user-configuration-request", "--to", "sip:acms@127.0.0.1:5", "--as", "acms",
      "--psi", PRIMARY, "--requester", ALICE, "--users", MIKE], "needs --listen"),
    (["--file", str(EXAMPLE_ADD), "--requester", ALICE, "--to",
      "sip:acms@127.0.0.1:5"], "drop --requester"),
    (["--file", str(BAD.parent / "good" / "process-indication-without-expires.xml"),
      "--to", "sip:acms@127.0.0.1:5"], "mcacm send sends"),
    (["--file", str(EXAMPLE_ADD), "profile-update-request", "--to",
      "sip:acms@127.0.0.1:5"], "not a profile-update-request"),
    (["add-user-configuration-request", "--to", "sip:acms@127.0.0.1:5",
      "--requester", ALICE, "--users", MIKE, "--via", "sctp:127.0.0.1:5"], "not udp, tcp"),
    (["add-user-configuration-request", "--to", "sip:acms@127.0.0.1:5;transport=tcp",
      "--requester", ALICE, "--users", MIKE, "--transport", "udp"], "transports disagree"),
    (["add-user-configuration-request", "--to", "sip:acms@127.0.0.1:5",
      "--requester", ALICE, "--users", MIKE, "--migrated-user", MIKE], "takes no"),
    (["add-user-configuration-request", "--to", "sip:acms@127.0.0.1:5",
      "--requester", ALICE, "--users", MIKE, "--timeout", "0"], "positive"),
    (["add-user-configuration-request", "--to", "sip:acms@127.0.0.1:5",
      "--requester", ALICE, "--users", MIKE, "--transport", "tls"], "--tls-cert"),
])
def test_usage_errors_exit_2(argv: list[str], says: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["send", *argv])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    assert code == 2
    captured = capsys.readouterr()
    assert says in captured.err and captured.out == ""


def test_help_has_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["send", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "mcacm send add-user-configuration-request --to" in out
    assert "3 no answer in time" in out


# --------------------------------------------------------------------------- 3


def test_silent_peer_exit_3() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        class Drop(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.append(data)  # read and dropped

        transport, _ = await loop.create_datagram_endpoint(Drop, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            code, out, err = await mcacm(
                "send", "add-user-configuration-request", "--to", f"sip:acms@127.0.0.1:{port}",
                "--requester", ALICE, "--users", MIKE, "--timeout", "1", "--json")
            assert code == 3, out + err
            doc = json.loads(out)
            assert doc["verdict"] == "no-answer"
            assert doc["failure"].startswith("no answer to REGISTER")
            assert doc["sip"] is None and doc["response"] is None
            assert got and got[0].startswith(b"REGISTER sip:127.0.0.1:")
            # as a foreign ACMS: no REGISTER, the MESSAGE goes unanswered
            got.clear()
            code, out, _ = await mcacm(
                "send", "add-user-configuration-request", "--to", f"sip:acms@127.0.0.1:{port}",
                "--requester", ALICE, "--users", MIKE, "--timeout", "1", "--as", "acms",
                "--psi", PRIMARY, "--listen", f"127.0.0.1:{free_port()}")
            assert code == 3
            assert "no answer to MESSAGE (after 1.0 s, --timeout 1)" in out
            assert got and got[0].startswith(b"MESSAGE sip:acms@127.0.0.1:")
        finally:
            transport.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- 4


def test_invalid_request_from_a_file_exit_4_and_nothing_sent(
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = BAD / "profile-update-request.missing-target.xml"
    assert main(["send", "--file", str(bad), "--to", "sip:acms@127.0.0.1:9"]) == 4
    err = capsys.readouterr().err
    assert f"{bad}:12: /profile-update-request/migrated-user-id: " in err
    assert "(add <target> here)" in err
    # the same through stdin, as JSON, as a user runs it
    proc = subprocess.run([MCACM, "send", "--file", "-", "--json", "--to",
                           "sip:acms@127.0.0.1:9"], input=bad.read_bytes(),
                          capture_output=True, timeout=60)
    assert proc.returncode == 4
    doc = json.loads(proc.stdout)
    assert doc["exit"] == 4 and doc["problems"][0]["path"].startswith("/profile-update-request")


def test_invalid_request_from_flags_exit_4_names_the_flag(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "add-user-configuration-request", "--to", "sip:acms@127.0.0.1:9",
                 "--requester", "alice at primary", "--users", MIKE, "not a uri"]) == 4
    err = capsys.readouterr().err
    assert "/add-user-configuration-request/requester: " in err
    assert "is not a URI" in err and "correct --requester" in err


def test_invalid_answer_exit_4(tmp_path: Path) -> None:
    """A fake partner ACMS accepts our request and then sends a process indication that lacks
    its <acms> (a corpus file): we answer it 400 and exit 4 with the problem."""
    listen = free_port()
    bad = (BAD / "process-indication.missing-acms.xml").read_bytes()

    async def main() -> None:
        peer = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
        answers: list[int] = []

        async def indicate() -> None:
            req = peer.new_request("MESSAGE", PRIMARY, from_uri=PARTNER, to_uri=PRIMARY,
                                   body=bad, content_type=codec.ACM_CONTENT_TYPE)
            final = await peer.send(req, via=Peer("udp", "127.0.0.1", listen))
            answers.append(final.status)

        def on_message(incoming: IncomingRequest) -> Reply:
            asyncio.get_running_loop().create_task(indicate())
            return Reply(200)

        peer.serve("MESSAGE", on_message)
        await peer.start()
        host, port = peer.local_address("udp")
        try:
            code, out, err = await mcacm(
                "send", "--file", str(EXAMPLE_ADD), "--as", "acms", "--psi", PRIMARY,
                "--listen", f"127.0.0.1:{listen}", "--to", PARTNER, "--via",
                f"udp:{host}:{port}", "--json", "--timeout", "10")
            assert code == 4, out + err
            doc = json.loads(out)
            assert doc["verdict"] == "invalid" and doc["sip"]["status"] == 200
            assert doc["arrivals"][0]["answered"] == 400
            assert any(p["path"] == "/process-indication/request" and p["hint"] == "add <acms> here"
                       for p in doc["problems"])
            assert answers == [400]
        finally:
            await peer.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- 5 and the ACMS role


def test_unknown_system_refused_exit_5_with_warning(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        code, out, err = await mcacm(
            "send", "add-user-configuration-request", "--as", "acms",
            "--psi", "sip:acms@stranger.example", "--listen", f"127.0.0.1:{free_port()}",
            "--to", PARTNER, "--via", lab.partner.hop("udp"), "--requester", ALICE,
            "--users", MIKE)
        assert code == 5, out + err
        assert "MESSAGE     403 Forbidden" in out
        # a PSI that is no configured peer is taken for a local user (docs/decisions.md)
        assert "Warning     not-authorised: sip:acms@stranger.example is not an authorised" \
            in out
        assert "result      refused" in out

    with_lab(tmp_path, body)


def test_unauthorised_user_cannot_register_exit_5(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        code, out, err = await mcacm(
            "send", "pending-data-download-request", "--to", PRIMARY, "--via",
            lab.primary.hop("udp"), "--requester", "sip:mallory@primary.example", "--json")
        assert code == 5, out + err
        doc = json.loads(out)
        assert doc["sip"]["method"] == "REGISTER" and doc["sip"]["status"] == 403

    with_lab(tmp_path, body)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_as_foreign_primary_acms_from_a_file_exit_0(transport: str, tmp_path: Path) -> None:
    """The example document (sent as is) to the partner ACMS, which routes its answers to our
    listen address as if we were the primary ACMS."""
    listen = free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)

    async def body(lab: Lab) -> None:
        lab.partner.set_hops({PRIMARY: f"sip:127.0.0.1:{listen};transport={transport}"})
        code, out, err = await mcacm(
            "send", "--file", str(EXAMPLE_ADD), "--as", "acms", "--psi", PRIMARY,
            "--listen", f"127.0.0.1:{listen}", "--to", PARTNER, "--via",
            f"{transport}:127.0.0.1:{lab.partner.addresses[transport][1]}", "--json")
        assert code == 0, out + err
        doc = json.loads(out)
        assert doc["register"] is None and doc["identity"] == PRIMARY
        assert doc["transaction_id"] == "0b6e2f4c-7d51-4c3e-9a0e-5f2d8c1b7a90"
        assert [u["result"]["code"] for u in doc["response"]["users"]] == ["success"] * 2
        assert doc["indication"]["request"] == "add-user-configuration-request"

    with_lab(tmp_path, body, transport)


def test_pending_data_download_as_acmc_exit_0(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        code, out, err = await mcacm(*as_alice(lab, "pending-data-download-request", "--json"))
        assert code == 0, out + err
        doc = json.loads(out)
        assert doc["response"]["flow"] == "pending-data-download-response"
        assert doc["response"]["user"] == ALICE and doc["indication"] is None

    with_lab(tmp_path, body)


def test_over_mutual_tls_as_acmc_exit_0(tmp_path: Path) -> None:
    """REGISTER, MESSAGE and the ACMS's delivery to our Contact (a new connection to our TLS
    listener), both sides authenticated by the same CA; a download needs only the ACMS."""
    pki = make_pki(tmp_path, "tls", {"primary": ("primary.example",), "us": ("127.0.0.1",)})
    tls = TlsSettings(certificate=pki["primary"], ca=pki["ca"], require_client_cert=True)

    async def main_() -> None:
        primary = AcmsNode(AcmsNodeConfig(primary_config(None), SipSettings(
            listens=(Listen("tls", "127.0.0.1"),), transport="tls", tls=tls,
            trusted_hosts=LOOPBACK)))
        await primary.start()
        try:
            code, out, err = await mcacm(
                "send", "pending-data-download-request", "--to", PRIMARY,
                "--via", f"tls:127.0.0.1:{primary.addresses['tls'][1]}",
                "--requester", ALICE, "--tls-cert", str(pki["us"]),
                "--tls-ca", str(pki["ca"]), "--json")
            assert code == 0, out + err
            doc = json.loads(out)
            assert doc["transport"] == "tls" and doc["register"] == {"status": 200}
            assert doc["response"]["flow"] == "pending-data-download-response"
            # without our certificate the ACMS cannot deliver to us: usage error first
            code, _, err = await mcacm(
                "send", "pending-data-download-request", "--to", PRIMARY,
                "--via", f"tls:127.0.0.1:{primary.addresses['tls'][1]}",
                "--requester", ALICE, "--tls-ca", str(pki["ca"]))
            assert code == 2 and "--tls-cert" in err
        finally:
            await primary.stop()

    asyncio.run(main_())


# --------------------------------------------------------------------------- Exchange (sans-I/O)


def test_exchange_answers_what_is_not_ours_480_and_flags_wrong_answers() -> None:
    from mcacm_sip.acm.examples import example_flows
    from mcacm_sip.runtime.sender import Exchange, ExchangeResult

    flows = example_flows()
    request = flows["profile-update-request"]
    ex = Exchange(request, started=100.0)  # type: ignore[arg-type]
    ex.on_final(200, "OK", None, 100.01)
    # a pending-data notification is not about our request: 480, the ACMS keeps it queued
    status, text = ex.on_message(codec.encode(flows["pending-data-notification"]),
                                 codec.ACM_CONTENT_TYPE, 100.02)
    assert status == 480 and text is not None and text.startswith("not-handled")
    assert ex.verdict is ExchangeResult.NO_ANSWER and not ex.done
    assert ex.on_message(codec.encode(flows["process-indication"]), codec.ACM_CONTENT_TYPE,
                         100.03) == (200, None)
    assert ex.timings["indication"] == pytest.approx(0.03)
    # another flow's response carrying our transaction id: 400 wrong-response, exit 4
    wrong = flows["add-user-configuration-response"]
    wrong = type(wrong)(request.transaction_id, *(
        getattr(wrong, f) for f in ("handler", "target", "result", "users")))
    status, text = ex.on_message(codec.encode(wrong), codec.ACM_CONTENT_TYPE, 100.04)
    assert status == 400 and text is not None and text.startswith("wrong-response")
    assert ex.done and ex.verdict is ExchangeResult.INVALID


def test_exchange_wrong_content_type_is_an_invalid_answer() -> None:
    from mcacm_sip.acm.examples import example_flows
    from mcacm_sip.runtime.sender import Exchange, ExchangeResult

    flows = example_flows()
    ex = Exchange(flows["add-user-configuration-request"], started=0.0)  # type: ignore[arg-type]
    status, _ = ex.on_message(codec.encode(flows["add-user-configuration-response"]),
                              "application/xml", 1.0)
    assert status == 415 and ex.verdict is ExchangeResult.INVALID
    [arrival] = ex.invalid
    assert arrival.problems and arrival.flow is None
    # the right response, on time, after a 200 to the MESSAGE: positive
    ex = Exchange(flows["add-user-configuration-request"], started=0.0)  # type: ignore[arg-type]
    ex.on_message(codec.encode(flows["add-user-configuration-response"]),
                  codec.ACM_CONTENT_TYPE, 1.0)
    assert not ex.done  # the MESSAGE's own final status is still missing
    ex.on_final(200, "OK", None, 1.5)
    assert ex.done and ex.result == "success" and ex.verdict is ExchangeResult.POSITIVE
