"""The harness itself against known-good peers: sipp <-> sipp, direct and through Kamailio.

If these fail, the fault is in the machine or the harness, not in mcacm-sip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .peers import SippTransport, kamailio, run_sipp, sip_ping, sipp_uas

pytestmark = pytest.mark.interop


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_to_sipp_direct(sipp: Path, transport: SippTransport) -> None:
    with sipp_uas(sipp, transport=transport) as uas:
        run = run_sipp("uac_message.xml", uas.address, sipp, calls=10, rate=200,
                       transport=transport)
    assert run.rc == 0, run.explain()
    assert (run.stats.successful, run.stats.failed) == (10, 0), run.explain()
    assert not _alive(uas.pid)


@pytest.mark.parametrize("defines", [(), ("STRICT_INDIALOG",)], ids=["lenient", "strict"])
def test_sipp_through_kamailio(sipp_kamailio: Path, defines: tuple[str, ...]) -> None:
    with sipp_uas(sipp_kamailio) as uas, kamailio(sipp_kamailio, defines=defines) as proxy:
        run = run_sipp("uac_message.xml", uas.address, sipp_kamailio, calls=10, rate=200,
                       proxy=proxy.port)
        assert run.rc == 0, run.explain() + proxy.log_text()[-2000:]
        assert run.stats.successful == 10
    # both peers were stopped by PID: nothing is left behind and the port answers no more
    assert not _alive(uas.pid) and not _alive(proxy.pid)
    assert sip_ping(proxy.port) is None
