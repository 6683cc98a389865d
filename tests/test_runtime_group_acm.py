"""Group-related ACM (TS 23.280 10.17.4) over real SIP on loopback: the in-process lab (both
ACMSs, both ACMCs, the FA server), ``mcacm send`` and ``mcacm groups`` as a user runs them, and
the applied state read from the partner's store file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from mcacm_sip.acm.model import (
    Addressee,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionResponse,
    Urgency,
)
from mcacm_sip.runtime.acmc import AutoDecider
from mcacm_sip.runtime.lab import (
    ALICE,
    CLOSED_GROUP,
    DAVE,
    DUTY,
    OPEN_GROUP,
    PARTNER,
    PRIMARY,
    Lab,
)
from mcacm_sip.store.sqlite import read_groups

MCACM = str(Path(sys.executable).with_name("mcacm"))
ERIN, FRANK = "sip:erin@partner.example", "sip:frank@partner.example"


async def mcacm(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        MCACM, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_group_update_automatic_then_decided_by_the_partner_acmc(tmp_path: Path) -> None:
    async def main() -> None:
        async with Lab.start(tmp_path, dave=AutoDecider(True, "welcome")) as lab:
            auto = await lab.alice.group_membership_update(
                target=Addressee(DAVE), group_id=OPEN_GROUP, users=(ERIN, FRANK),
                operation=GroupOperation.ADD, urgency=Urgency.HIGH, timeout=15)
            assert auto.result == "success", auto
            assert isinstance(auto.response, GroupMembershipUpdateResponse)
            assert auto.response.handler.mc_service_id == PARTNER  # 10.17.3.2: the ACMS
            assert lab.dave_decider.decided == []
            manual = await lab.alice.group_membership_update(
                target=Addressee(DAVE), group_id=CLOSED_GROUP, users=(ERIN,),
                operation=GroupOperation.ADD, timeout=15)
            assert manual.result == "success", manual
            assert isinstance(manual.response, GroupMembershipUpdateResponse)
            assert manual.response.handler.mc_service_id == DAVE
            assert [r.FLOW for r, _ in lab.dave_decider.decided] == [
                "group-membership-update-request"]
            removed = await lab.alice.group_membership_update(
                target=Addressee(DAVE), group_id=OPEN_GROUP, users=(ERIN,),
                operation=GroupOperation.DELETE, timeout=15)
            assert removed.result == "success"
            live = {g.group_id: g.members for g in lab.partner.core.groups()}
        # committed to the partner's store: read as `mcacm groups` reads it, after the stop
        stored = {g.group_id: g.members for g in read_groups(str(tmp_path / "partner.sqlite"))}
        assert stored == live == {OPEN_GROUP: (FRANK,), CLOSED_GROUP: (ERIN,)}

    asyncio.run(main())


def test_provision_via_a_functional_alias_held_by_the_partner_user(tmp_path: Path) -> None:
    async def main() -> None:
        async with Lab.start(tmp_path, dave=AutoDecider(True)) as lab:
            assert await lab.dave.set_functional_alias(DUTY, True) == 200
            out = await lab.alice.provide_groups(
                target=Addressee(functional_alias=DUTY), groups=(OPEN_GROUP, CLOSED_GROUP),
                timeout=20)
            assert out.result == "success", out
            assert isinstance(out.response, InterconnectionGroupProvisionResponse)
            assert out.response.handler.mc_service_id == DAVE
            assert out.response.handler.functional_alias == DUTY
            assert out.indication is not None and out.indication.acms == PARTNER
            assert {g.group_id for g in lab.partner.core.groups() if g.provisioned} == {
                OPEN_GROUP, CLOSED_GROUP}

    asyncio.run(main())


def test_mcacm_send_both_procedures_and_mcacm_groups_shows_them(tmp_path: Path) -> None:
    config = tmp_path / "partner-view.toml"
    config.write_text(f'psi = "{PARTNER}"\n[store]\npath = "partner.sqlite"\n')

    async def main() -> None:
        async with Lab.start(tmp_path, dave=AutoDecider(False, "not now")) as lab:
            hop = lab.primary.hop(lab.transport)
            base = ["--to", PRIMARY, "--via", hop, "--requester", ALICE, "--json", "-q"]
            code, out, err = await mcacm(
                "send", "group-membership-update", *base, "--target", DAVE,
                "--group", OPEN_GROUP, "--users", ERIN, "--operation", "add",
                "--urgency", "high")
            assert code == 0, out + err
            doc = json.loads(out)
            assert doc["request"]["flow"] == "group-membership-update-request"
            assert doc["request"]["operation"] == "add" and doc["request"]["urgency"] == "high"
            assert doc["response"]["group_id"] == OPEN_GROUP and doc["result"] == "success"
            # DAVE rejects what policy leaves to him: exit 1, Result rejected-by-user
            code, out, err = await mcacm(
                "send", "interconnection-group-provision", *base, "--target", DAVE,
                "--groups", OPEN_GROUP, CLOSED_GROUP)
            assert code == 1, out + err
            doc = json.loads(out)
            assert doc["result"] == "rejected-by-user"
            assert doc["response"]["groups"] == [OPEN_GROUP, CLOSED_GROUP]
            # a flag of another flow is a usage error, nothing sent
            code, out, err = await mcacm("send", "interconnection-group-provision", *base,
                                         "--target", DAVE, "--groups", OPEN_GROUP,
                                         "--operation", "add")
            assert code == 2 and "takes no --operation" in err, err
            # the view while the ACMS runs (read-only)
            code, out, err = await mcacm("groups", "--config", str(config), "--json")
            assert code == 0, err
            assert json.loads(out) == [{"peer": PRIMARY, "group": OPEN_GROUP,
                                        "provisioned": False, "members": [ERIN],
                                        "updated": json.loads(out)[0]["updated"]}]

    asyncio.run(main())
    text = subprocess.run([MCACM, "groups", "-c", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 0
    assert f"{OPEN_GROUP}  (home {PRIMARY})" in text.stdout and ERIN in text.stdout
    assert "provisioned: no" in text.stdout
