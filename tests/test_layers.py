"""The sans-I/O layers stay sans-I/O (docs/structure.md "The SIP layer").

The protocol part of ``mcacm_sip/sip/`` (everything outside ``sip/aio/``), ``core/`` and ``acm/``
take bytes, messages, events and ``now`` and return actions: they import no asyncio, socket,
ssl or selectors, and nothing from the asyncio part. Read from the source (AST), so an import
inside a function or under ``TYPE_CHECKING`` counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mcacm_sip"
IO_MODULES = frozenset({"asyncio", "socket", "ssl", "selectors"})
SANS_IO = ("sip", "core", "acm")


def sans_io_files() -> list[Path]:
    files = [f for part in SANS_IO for f in sorted((PACKAGE / part).rglob("*.py"))]
    return [f for f in files if f.relative_to(PACKAGE).parts[:2] != ("sip", "aio")]


def package_of(path: Path) -> tuple[str, ...]:
    return path.relative_to(PACKAGE.parent).parts[:-1]


def imported(source: str, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """Every module ``source`` (a module of ``package``) imports, relative imports resolved,
    with its line."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, node.module)) if node.module else ".".join(base)
            out.append((node.lineno, module))
            # ``from . import aio`` names a module in the alias
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def violations(source: str, package: tuple[str, ...]) -> list[str]:
    found = []
    for line, module in imported(source, package):
        if module.split(".")[0] in IO_MODULES or (module + ".").startswith("mcacm_sip.sip.aio."):
            found.append(f"line {line}: imports {module}")
    return found


def test_the_sans_io_set_is_what_the_docs_say() -> None:
    names = {str(f.relative_to(PACKAGE)) for f in sans_io_files()}
    for expected in ("sip/message.py", "sip/headers.py", "sip/uri.py", "sip/framer.py",
                     "sip/transaction.py", "sip/registrar.py", "sip/subscription.py",
                     "sip/publication.py", "core/acmc.py", "acm/codec.py"):
        assert expected in names
    assert not any(name.startswith("sip/aio/") for name in names)


@pytest.mark.parametrize("path", sans_io_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_io_import(path: Path) -> None:
    assert violations(path.read_text(), package_of(path)) == []


def test_the_check_sees_each_form_of_import() -> None:
    """The check itself: every way of writing an I/O import is caught (a check that cannot
    fail proves nothing)."""
    package = ("mcacm_sip", "sip")
    forms = ["import asyncio", "import socket as s", "from ssl import SSLContext",
             "import selectors.x", "from .aio import endpoint", "from . import aio",
             "from .aio.usages import Ticker", "from mcacm_sip.sip.aio import SipEndpoint",
             "if True:\n    import asyncio"]
    for form in forms:
        assert violations(form + "\n", package), form
    assert violations("from .message import parse\nimport heapq\nfrom ..text import ascii_int\n",
                      package) == []
    # from core/, ``..sip.aio`` is the asyncio part too
    assert violations("from ..sip.aio import usages\n", ("mcacm_sip", "core"))
