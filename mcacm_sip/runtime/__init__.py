"""asyncio runtime: the ACMS, ACMC and FA controlling server nodes (docs/running.md)."""

from mcacm_sip.runtime.acmc import (
    AcmcNode,
    AutoDecider,
    Decider,
    Decision,
    InteractiveDecider,
    ProgrammableDecider,
    RequestHandle,
    RequestOutcome,
    describe_request,
)
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings, TraceHook, TraceRecord
from mcacm_sip.runtime.config import (
    AcmcNodeConfig,
    AcmsNodeConfig,
    FaServerNodeConfig,
    LogSettings,
    load_acmc_node,
    load_acms_node,
    load_fa_server_node,
)
from mcacm_sip.runtime.fa_server import FaServerNode

__all__ = [
    "AcmcNode",
    "AcmcNodeConfig",
    "AcmsNode",
    "AcmsNodeConfig",
    "AutoDecider",
    "Decider",
    "Decision",
    "FaServerNode",
    "FaServerNodeConfig",
    "InteractiveDecider",
    "LogSettings",
    "ProgrammableDecider",
    "RequestHandle",
    "RequestOutcome",
    "SipSettings",
    "TraceHook",
    "TraceRecord",
    "describe_request",
    "load_acmc_node",
    "load_acms_node",
    "load_fa_server_node",
]
