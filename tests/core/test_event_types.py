"""Information flows, the cores' events and their actions: one base class each, the ACMS's
and the ACMC's actions apart, and no action name that means something else in another layer
(issue 14)."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from mcacm_sip.acm.model import FLOW_TYPES, AcmFlow, InformationFlow
from mcacm_sip.core import events
from mcacm_sip.core.events import (
    AcmcAction,
    AcmcEvent,
    AcmsAction,
    AcmsEvent,
    CoreAction,
    CoreEvent,
    Decide,
    Put,
    Remove,
    ReportToUser,
    SubscribeFa,
)

PACKAGE = Path(events.__file__).resolve().parents[1]


def _members(union: object) -> set[type]:
    return set(typing.get_args(union))


def test_every_event_is_a_frozen_core_event() -> None:
    for cls in _members(AcmsEvent) | _members(AcmcEvent):
        assert issubclass(cls, CoreEvent), cls
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        assert "now" in {f.name for f in dataclasses.fields(cls)}, cls


def test_every_action_is_a_frozen_core_action() -> None:
    for cls in _members(AcmsAction) | _members(AcmcAction):
        assert issubclass(cls, CoreAction) and not issubclass(cls, CoreEvent), cls
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls


def test_every_information_flow_has_the_one_base() -> None:
    flows = _members(AcmFlow)
    assert flows == set(FLOW_TYPES) and len(flows) == 14  # 10.17.4 added four (issue 17)
    for cls in flows:
        assert issubclass(cls, InformationFlow) and cls.FLOW and cls.CLAUSE.startswith("10.17")
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        assert dataclasses.fields(cls)[0].name == "transaction_id", cls


def test_the_acms_and_the_acmc_have_their_own_actions() -> None:
    acms, acmc = _members(AcmsAction), _members(AcmcAction)
    assert {Put, Remove, SubscribeFa} <= acms and not {Put, Remove, SubscribeFa} & acmc
    assert {Decide, ReportToUser} <= acmc and not {Decide, ReportToUser} & acms


@pytest.mark.parametrize("name", ["Send", "Accept", "Refuse", "Notify", "Report", "Verdict"])
def test_a_generic_name_is_defined_in_one_package_only(name: str) -> None:
    """``Send`` in core/ and in sip/ made every reader check the import; each of these names
    now has one home (a class of that name in at most one subpackage)."""
    homes = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body):
            homes.add(path.relative_to(PACKAGE).parts[0])
    assert len(homes) <= 1, f"class {name} is defined in {sorted(homes)}"
