"""The tests' certificates: :mod:`mcacm_sip.pki` (what ``mcacm init`` uses too)."""

from mcacm_sip.pki import LOOPBACK_LEAVES, make_pki

__all__ = ["LOOPBACK_LEAVES", "make_pki"]
