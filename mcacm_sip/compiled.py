"""The rule every optional compiled part follows (setup.py builds each when a C compiler and
Python's headers are there): an environment variable chooses ``auto`` (the compiled part when
built), ``c`` (the compiled part or an ImportError at start) or ``python``."""

from __future__ import annotations


def wanted(env: str, choice: str) -> bool:
    """Whether ``choice`` (``env``'s value) asks for the compiled part, if built; a value that
    is not one of the three is refused."""
    if choice not in ("auto", "c", "python"):
        raise ImportError(f"{env}={choice!r}: want auto, c or python")
    return choice != "python"


def not_built(env: str, module: str) -> ImportError:
    """The error of ``env=c`` when ``module`` is not built: what to install."""
    return ImportError(f"{env}=c but {module} is not built: it needs a C compiler and the "
                       "Python headers (Debian: gcc python3-dev), then pip install -e .")
