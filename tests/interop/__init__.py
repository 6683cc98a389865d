"""Interop tests against real SIPp and Kamailio processes (see peers.py)."""
