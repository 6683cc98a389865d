"""What fuzzing found, one test each, and every saved input (fuzz/seeds/) replayed through the
contract."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fuzz.contract import ReceivePath, check_acm_body, check_sip, check_stream
from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import NotAcmDocument
from mcacm_sip.sip import SipParseError, error_response, parse
from mcacm_sip.sip.framer import PONG, StreamFramer

SEEDS = Path(__file__).resolve().parents[2] / "fuzz" / "seeds"


def seeds(target: str) -> list[Path]:
    return sorted((SEEDS / target).iterdir())


@pytest.mark.parametrize("path", seeds("sip_parser"), ids=lambda p: p.name)
def test_sip_parser_seed(path: Path) -> None:
    data = path.read_bytes()
    check_sip(data, datagram=True)
    check_sip(data, datagram=False)
    check_stream(data, [len(data) // 3, len(data) // 2])


@pytest.mark.parametrize("path", seeds("xml_decoder"), ids=lambda p: p.name)
def test_xml_decoder_seed(path: Path) -> None:
    check_acm_body(path.read_bytes())


def test_receive_path_seeds() -> None:
    async def main() -> None:
        rp = ReceivePath()
        await rp.start()
        try:
            for path in seeds("receive_path"):
                await rp.acheck(path.read_bytes())
        finally:
            await rp.stop()

    asyncio.run(main())


REQUEST = (b"MESSAGE sip:0@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK0\n"
           b"From: <sip:0@127.0.0.1>;tag=0\nTo: <sip:0@127.0.0.1>\nCall-ID: 0@0\n"
           b"CSeq: 1 MESSAGE\nContent-Length: 0\n\n")


def test_a_root_name_with_colons_is_refused_as_not_acm() -> None:
    # atheris xml_decoder: libxml2 takes "<a:b:c xmlns='u'/>" with an undeclared prefix (a
    # namespace warning) and etree.QName(root) raised ValueError
    data = (SEEDS / "xml_decoder" / "colons-in-the-root-name.xml").read_bytes()
    with pytest.raises(NotAcmDocument) as caught:
        codec.decode(data)
    assert caught.value.path == "/presenceurn:mcacm-sip:ns:rey-na1"


def test_nul_in_a_header_is_refused_and_never_echoed() -> None:
    # atheris sip_parser: a NUL in the Via was echoed in the 400 (C parsers truncate there)
    data = REQUEST.replace(b"branch=z9hG4bK0", b"branch=z9hG4bK\x00x")
    with pytest.raises(SipParseError) as caught:
        parse(data)
    assert caught.value.status == 400
    # the only Via holds the NUL, so there is nowhere to answer: silence
    assert error_response(data, caught.value) is None
    # a NUL elsewhere: answered, without the NUL
    data = REQUEST.replace(b"CSeq: 1", b"X: \x00\nCSeq: 1")
    with pytest.raises(SipParseError) as caught:
        parse(data)
    answer = error_response(data, caught.value)
    assert answer is not None and answer.startswith(b"SIP/2.0 400 ") and b"\x00" not in answer


def test_first_empty_line_ends_the_header_block_however_the_stream_is_cut() -> None:
    # hypothesis stream framer: an LF-only message followed by a CRLFCRLF keep-alive was one
    # message when it arrived whole and a message plus a ping when cut in two
    data = REQUEST + b"\r\n\r\n"
    whole = StreamFramer().feed(data)
    framer = StreamFramer()
    cut = [*framer.feed(data[:len(REQUEST) + 1]), *framer.feed(data[len(REQUEST) + 1:])]
    assert whole == cut == [REQUEST, PONG]
    assert parse(data).body == b""  # the datagram rule: the same first empty line


def test_an_empty_via_is_no_via() -> None:
    # hypothesis sip parser: ``v:`` with no value gave an error answer with an empty Via
    data = b"\x00  \x00\nV:"
    with pytest.raises(SipParseError) as caught:
        parse(data)
    assert error_response(data, caught.value) is None


def test_control_characters_never_reach_a_warning() -> None:
    # atheris xml_decoder: DELs in a namespace name came back in the 400's Warning text
    from mcacm_sip.acm import codec
    from mcacm_sip.acm.errors import AcmError
    from mcacm_sip.runtime.base import warning

    data = (SEEDS / "xml_decoder" / "del-in-namespace-warning.xml").read_bytes()
    with pytest.raises(AcmError) as caught:
        codec.decode(data)
    assert "\x7f" not in caught.value.warning_text
    assert "pidf???" in caught.value.warning_text  # where they were, visibly
    # every Warning the nodes write goes through the same rule (core texts carry peer values)
    name, value = warning("acms.example", 'unknown-transaction: a\x7f\x01b\r\nX-Injected: 1"')
    assert (name, value) == ("Warning",
                             '399 acms.example "unknown-transaction: a??b X-Injected: 1\\""')


def test_a_profile_that_cannot_be_canonicalised_is_refused() -> None:
    # atheris xml_decoder: a profile namespace name with "&amp;" decoded, but libxml2's C14N
    # wrote it back unescaped, so the flow could not be encoded (nor the profile re-read)
    from mcacm_sip.acm import codec
    from mcacm_sip.acm.errors import InvalidContent

    data = (SEEDS / "xml_decoder" / "ampersand-in-profile-namespace.xml").read_bytes()
    with pytest.raises(InvalidContent) as caught:
        codec.decode(data)
    assert caught.value.sip_status == 400 and caught.value.ie == "profile"
    # the same profile with a plain namespace name is fine
    flow = codec.decode(data.replace(b"&amp;params", b"params"))
    assert codec.decode(codec.encode(flow)) == flow


def test_a_profile_with_a_relative_namespace_name_is_refused() -> None:
    # atheris xml_decoder: xmlns:id="mcptt-user-authorisation" in the profile made libxml2's
    # C14N fail with C14NError, an undefined exception (a 500 instead of a 400)
    from mcacm_sip.acm import codec
    from mcacm_sip.acm.errors import InvalidContent

    data = (SEEDS / "xml_decoder" / "relative-namespace-in-profile.xml").read_bytes()
    with pytest.raises(InvalidContent) as caught:
        codec.decode(data)
    assert caught.value.sip_status == 400 and caught.value.ie == "profile"
