"""The ladder renderer: columns per participant, arrows in the right direction, ACM flow names."""

from mcacm_sip.ladder import LadderEvent, describe, render

MESSAGE = (
    b"MESSAGE sip:acms@partner.example SIP/2.0\r\nCSeq: 7 MESSAGE\r\n"
    b"Content-Type: application/vnd.mcacm-sip.acm+xml\r\n\r\n"
    b'<?xml version="1.0"?>\n<acm:profile-update-request xmlns:acm="urn:mcacm-sip:ns:acm:1.0"/>'
)
OK = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 7 MESSAGE\r\n\r\n"
NOTIFY = (
    b"NOTIFY sip:acms SIP/2.0\r\no: presence\r\n"
    b"Subscription-State: terminated;reason=timeout\r\n\r\n"
)


def test_describe_names_the_acm_flow_status_and_event() -> None:
    assert describe(MESSAGE) == "MESSAGE profile-update-request"
    assert describe(OK) == "200 OK (MESSAGE)"
    assert describe(NOTIFY) == "NOTIFY presence terminated"
    assert describe(b"\x00\xffgarbage") != ""


def test_render_draws_arrows_between_the_right_columns() -> None:
    text = render(
        [LadderEvent(1.0, "a", "b", MESSAGE), LadderEvent(1.25, "b", "a", OK)],
        {"a": "primary-acmc", "b": "primary-acms"},
    )
    lines = text.splitlines()
    assert "primary-acmc" in lines[0] and lines[0].index("primary-acmc") < lines[0].index(
        "primary-acms"
    )
    assert "profile-update-request" in lines[1]
    assert lines[2].lstrip().startswith("+0.000") and lines[2].rstrip().endswith("->|")
    assert lines[4].lstrip().startswith("+0.250") and "|<-" in lines[4]
