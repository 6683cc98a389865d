"""mcacm-sip: TS 23.280 clause 10.17 administrative configuration management over SIP."""

from pathlib import Path

__version__ = "0.1.0"


def example_path(relative: str = "") -> Path:
    """A file of the shipped examples (example configurations, interop profiles, SIPp
    scenarios, the Wireshark script): the checkout's ``examples/`` or, installed from a wheel,
    the package data ``mcacm_sip/examples/`` (pyproject.toml maps one onto the other)."""
    here = Path(__file__).resolve().parent
    base = here / "examples"
    if not base.is_dir():  # a checkout (or an editable install of one)
        base = here.parent / "examples"
    return base / relative if relative else base
