"""Issue 12 rule 7: no URI is compared as a string anywhere in the package.

Identities (MC service IDs, functional aliases, PSIs, AORs, contacts) are equivalent by RFC 3261
§19.1.4, which a ``str ==``, a ``str in`` or a case-sensitive glob gets wrong (``sip:Alice@HOST``
and ``sip:Alice@host`` are one user).  This test walks every module's syntax tree and fails on:

- ``==``, ``!=``, ``in``, ``not in`` where an operand is *URI-ish*, unless an operand is visibly
  a :class:`~mcacm_sip.sip.uri.Uri` (see ``_uri_typed``);
- ``fnmatch`` / ``fnmatchcase`` / ``fnmatch.filter`` with a URI-ish argument (use
  ``uri_glob_match``).

URI-ish: the operand's name (a variable, an attribute, the value a subscript or a string method
is applied to, the argument of ``str()``) has a word, split at ``_`` and case changes, from
``_URI_WORDS`` -- the names this code base gives identities.

Visibly a Uri: a call of a function or a property whose return annotation names ``Uri``
(``identity(x)``, ``Uri.parse(x)``, ``x.aor``), an attribute, parameter or local variable
annotated with a type that names ``Uri`` (``dict[Uri, str]`` included), or a local variable
assigned from such an expression.  mypy --strict then sees that the other side is a Uri too.
``IdKey`` (``core/identity.py``: the canonical text of ``identity(x)``, equal for equivalent
spellings, a NewType mypy keeps apart from plain text) counts as a Uri.
The comparisons that are legitimately on strings are listed in ``ALLOWED`` with the reason.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mcacm_sip

PACKAGE = Path(mcacm_sip.__file__).parent

_URI_WORDS = frozenset({
    "uri", "uris", "psi", "psis", "aor", "aors", "user", "users", "requester", "requesters",
    "target", "targets", "holder", "holders", "fa", "fas", "identity", "identities", "sender",
    "alias", "aliases", "contact", "contacts", "decider", "assignee", "owner", "handler",
    "registrar",
})
_SERVICE_ID = re.compile(r"service_?id|partner_?id|primary_?id", re.IGNORECASE)
_STRING_METHODS = frozenset({"lower", "upper", "casefold", "strip", "lstrip", "rstrip"})
_FNMATCH = frozenset({"fnmatch", "fnmatchcase", "filter"})
_WRAPPERS = frozenset({"str", "set", "frozenset", "sorted", "tuple", "list"})
"""Calls whose result is compared as their argument would be (``set(users) == ...``)."""


_URI_TYPES = frozenset({"Uri", "IdKey"})
"""Annotations that make a value visibly an identity compared as a URI."""


def _words(name: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return {w.lower() for w in spaced.split("_") if w}


def uri_ish_name(name: str) -> bool:
    """Whether an identifier names an identity (see the module docstring)."""
    return bool(_words(name) & _URI_WORDS) or bool(_SERVICE_ID.search(name))


def _names_uri(annotation: ast.expr | None) -> bool:
    return annotation is not None and any(
        (isinstance(n, ast.Name | ast.Attribute) and (getattr(n, "id", None) in _URI_TYPES
                                                     or getattr(n, "attr", None) in _URI_TYPES))
        or (isinstance(n, ast.Constant) and isinstance(n.value, str) and "Uri" in n.value)
        for n in ast.walk(annotation))


def _operand_name(node: ast.expr) -> str | None:
    """The name an operand goes by: ``x``, ``a.b.x``, ``x[k]``, ``x.lower()``, ``str(x)``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript | ast.Starred):
        return _operand_name(node.value)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _STRING_METHODS:
            return _operand_name(func.value)
        if isinstance(func, ast.Name) and func.id in _WRAPPERS and node.args:
            return _operand_name(node.args[0])
        if isinstance(func, ast.Attribute) and func.attr == "get":  # d.get(k): d's values
            return _operand_name(func.value)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        for elt in node.elts:
            name = _operand_name(elt)
            if name is not None and uri_ish_name(name):
                return name
    if isinstance(node, ast.GeneratorExp | ast.ListComp | ast.SetComp):
        return _operand_name(node.elt)
    return None


class _UriTypes:
    """What the whole package declares as a Uri: function/property return annotations and
    attribute annotations (``self.x: ...`` and class fields) by name."""

    def __init__(self, trees: dict[str, ast.Module]) -> None:
        returns: dict[str, list[bool]] = {}
        attrs: dict[str, list[bool]] = {}
        self._module_attrs: dict[str, dict[str, bool]] = {}
        for path, tree in trees.items():
            mine: dict[str, list[bool]] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    returns.setdefault(node.name, []).append(_names_uri(node.returns))
                elif isinstance(node, ast.AnnAssign):
                    target = node.target
                    name = target.attr if isinstance(target, ast.Attribute) else \
                        target.id if isinstance(target, ast.Name) else None
                    if name is not None:
                        attrs.setdefault(name, []).append(_names_uri(node.annotation))
                        mine.setdefault(name, []).append(_names_uri(node.annotation))
            self._module_attrs[path] = {n: all(v) for n, v in mine.items()}
        # a name is a Uri only if every declaration of it says so (in the module at hand
        # when it declares the name, else in the whole package)
        self.functions = frozenset(n for n, v in returns.items() if all(v))
        self.attributes = frozenset(n for n, v in attrs.items() if all(v)) | {
            n for n, v in returns.items() if all(v)}  # properties
        self.module = ""

    def typed(self, node: ast.expr, local: frozenset[str]) -> bool:
        if isinstance(node, ast.Name):
            return node.id in local or node.id == "Uri"
        if isinstance(node, ast.Attribute):
            declared = self._module_attrs.get(self.module, {})
            if node.attr in declared:
                return declared[node.attr]
            return node.attr in self.attributes
        if isinstance(node, ast.Subscript):
            return self.typed(node.value, local)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if name == "get" and isinstance(func, ast.Attribute):
                return self.typed(func.value, local)
            if name in _WRAPPERS and isinstance(func, ast.Name) and node.args:
                return self.typed(node.args[0], local)
            return name in self.functions
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return bool(node.elts) and all(self.typed(e, local) for e in node.elts)
        if isinstance(node, ast.GeneratorExp | ast.ListComp | ast.SetComp):
            return self.typed(node.elt, local | {
                n.id for g in node.generators for n in ast.walk(g.target)
                if isinstance(n, ast.Name) and self.typed(g.iter, local)})
        if isinstance(node, ast.IfExp):  # ``x if c else None`` is as typed as x
            branches = [b for b in (node.body, node.orelse)
                        if not (isinstance(b, ast.Constant) and b.value is None)]
            return bool(branches) and all(self.typed(b, local) for b in branches)
        return False

    def locals_of(self, func: ast.FunctionDef | ast.AsyncFunctionDef | None,
                  outer: frozenset[str]) -> frozenset[str]:
        """Names that are Uris in ``func``: annotated so, or assigned from a Uri expression."""
        if func is None:
            return outer
        names = set(outer)
        args = func.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None and _names_uri(arg.annotation):
                names.add(arg.arg)
        for _ in range(2):  # assignments from assignments
            for node in ast.walk(func):
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                        and _names_uri(node.annotation):
                    names.add(node.target.id)
                elif isinstance(node, ast.Assign | ast.NamedExpr):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    if self.typed(node.value, frozenset(names)):
                        names.update(t.id for t in targets if isinstance(t, ast.Name))
                    for t in targets:  # a, b = x, y
                        if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple) \
                                and len(t.elts) == len(node.value.elts):
                            names.update(e.id for e, v in zip(t.elts, node.value.elts,
                                                              strict=True)
                                         if isinstance(e, ast.Name)
                                         and self.typed(v, frozenset(names)))
                elif isinstance(node, ast.For | ast.comprehension) \
                        and self.typed(node.iter, frozenset(names)):
                    names.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
        return frozenset(names)


@dataclass(frozen=True, slots=True)
class Hit:
    path: str
    """Relative to the package, e.g. ``runtime/trust.py``."""
    line: int
    function: str
    source: str

    def __str__(self) -> str:
        return f"mcacm_sip/{self.path}:{self.line} in {self.function}: {self.source}"


def _is_plain_constant(node: ast.expr) -> bool:
    # None, numbers, booleans and the empty string say nothing about URI equivalence
    return isinstance(node, ast.Constant) and (
        not isinstance(node.value, str) or node.value == "")


_KEYED_METHODS = frozenset({"get", "pop", "setdefault"})


def _substring_test(node: ast.Compare) -> bool:
    # ``":" in uri``: a syntax check on the text, not a comparison of identities
    return isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
        and all(isinstance(op, ast.In | ast.NotIn) for op in node.ops)


def _keyed_by_text(container: ast.expr | None, key: ast.expr, types: _UriTypes,
                   local: frozenset[str]) -> bool:
    """A dict looked up, stored into or built with a URI-ish key that is no Uri."""
    if isinstance(key, ast.Tuple | ast.List):  # d[a, b], Callable[[Uri, X], Y]
        return any(_keyed_by_text(container, e, types, local) for e in key.elts)
    name = _operand_name(key)
    if name is None or not uri_ish_name(name) or types.typed(key, local):
        return False
    if isinstance(key, ast.Constant | ast.Slice):
        return False
    return container is None or not types.typed(container, local)


def scan(sources: dict[str, str]) -> list[Hit]:
    """Every string comparison of a URI in ``sources`` (path -> text)."""
    trees = {path: ast.parse(text, path) for path, text in sources.items()}
    types = _UriTypes(trees)
    hits: list[Hit] = []
    for path, tree in trees.items():
        if path in EXEMPT:
            continue
        types.module = path
        lines = sources[path].splitlines()
        for func, node, local in _walk(tree, types):
            bad = False
            if isinstance(node, ast.Compare) and any(
                    isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
                operands = [node.left, *node.comparators]
                named = [o for o in operands if (n := _operand_name(o)) and uri_ish_name(n)]
                bad = bool(named) and not any(types.typed(o, local) for o in operands) \
                    and not any(_is_plain_constant(o) for o in operands) \
                    and not _substring_test(node)
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load | ast.Store):
                bad = _keyed_by_text(node.value, node.slice, types, local)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in _KEYED_METHODS and node.args:
                bad = _keyed_by_text(node.func.value, node.args[0], types, local)
            elif isinstance(node, ast.DictComp):
                bad = _keyed_by_text(None, node.key, types, local | frozenset(
                    n.id for g in node.generators for n in ast.walk(g.target)
                    if isinstance(n, ast.Name) and types.typed(g.iter, local)))
            if not bad and isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else \
                    f.attr if isinstance(f, ast.Attribute) else None
                if name in _FNMATCH and (name != "filter" or isinstance(f, ast.Attribute)):
                    bad = any((n := _operand_name(a)) and uri_ish_name(n) for a in node.args)
            if bad and isinstance(node, ast.expr):
                hits.append(Hit(path, node.lineno, func, lines[node.lineno - 1].strip()))
    return hits


def _walk(tree: ast.Module, types: _UriTypes) -> Iterator[tuple[str, ast.AST, frozenset[str]]]:
    def visit(node: ast.AST, func: str, local: frozenset[str]) -> Iterator[
            tuple[str, ast.AST, frozenset[str]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = types.locals_of(child, local)
                for part in (*child.decorator_list, *child.args.defaults,
                             *(d for d in child.args.kw_defaults if d is not None), *child.body):
                    yield child.name, part, inner
                    yield from visit(part, child.name, inner)
            elif isinstance(child, ast.arg) or (
                    isinstance(node, ast.AnnAssign) and child is node.annotation):
                continue  # annotations compare nothing
            else:
                yield func, child, local
                yield from visit(child, func, local)
    yield from visit(tree, "<module>", frozenset())


def package_sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text()
            for p in sorted(PACKAGE.rglob("*.py"))}


EXEMPT = frozenset({"sip/uri.py"})
"""The equivalence itself, which compares the parts of URIs (its declarations still count)."""


# (path, function, source line) -> why it is a string comparison on purpose
ALLOWED: dict[tuple[str, str, str], str] = {
    ("runtime/trust.py", "_claim", "claim = self._claims.get(identity)"):
        "a memo keyed by the exact identity text: each spelling's peer and user are found once "
        "by its AOR (address_of_record, RFC 3261 19.1.4); another spelling has its own entry",
    ("runtime/trust.py", "_claim", "self._claims[identity] = claim"):
        "the same memo, keyed by the exact identity text",
    ("store/rows.py", "last_changes",
     "if old.assignee == tx.assignee and old.leg_id == tx.leg_id:"):
        "whether a row's stored column holds the record's text: another spelling of the same "
        "assignee is another text to write, so exact text on purpose",
    ("sip/headers.py", "__str__",
     'if not self.uri or ":" not in self.uri or any(c in self.uri for c in "<> "):'):
        "a character search in the text we write (syntax check), not a comparison of identities",
    ("sip/headers.py", "is_star", 'return self.uri == "*"'):
        "RFC 3261 20.10's wildcard Contact, which is no URI",
    ("acm/model.py", "_check_uri",
     "if type(value) is str and value in _URIS_OK:  # (a str subclass is checked anew)"):
        "a memo of texts the URI pattern accepted (a syntax check): exact text on purpose, "
        "another spelling of the same identity is checked anew, not taken as equal",
    ("acm/codec.py", "get", "if child.tag != _URI:"):
        "an XML element name (the constant _URI is the tag of a URI element), not a URI",
    ("acm/codec.py", "_profile_of", "if any(c in uri for c in _UNESCAPED):"):
        "a character search in the text (syntax check), not a comparison of identities",
    ("acm/codec.py", "_clear_uri",
     'if uri.tag != _URI or identity.get("type") == "Encrypted":'):
        "an XML element name (_URI) and the protection attribute's value, not a URI",
    ("acm/codec.py", "_accepted_uri",
     "return value if value in _URIS_OK or _uri_accepted(value) else None"):
        "model._check_uri's memo of texts the URI pattern accepted (a syntax check), as "
        "model._check_uri's own entry",
    ("acm/codec.py", "_tree_parts",
     "if len(requester) > 1 and requester[1].tag == _FUNCTIONAL_ALIAS:"):
        "an XML element name (the constant is the tag of a functional-alias element)",
    ("acm/codec.py", "_tree_parts", "if first.tag == _MC_SERVICE_ID:"):
        "an XML element name (the constant is the tag of an mc-service-id element)",
    ("acm/codec.py", "_tree_parts",
     "if len(target) > 1 and target[1].tag == _FUNCTIONAL_ALIAS:"):
        "an XML element name (the constant is the tag of a functional-alias element)",
    ("acm/validate.py", "_rule_problems",
     "if etree.QName(prof).namespace == codec.USER_PROFILE_NS and \\"):
        "an XML namespace name (USER_PROFILE_NS), not an identity",
    ("acm/validate.py", "_rule_problems",
     "etree.QName(prof).localname != codec.USER_PROFILE_ROOT:"):
        "an XML element name, not an identity",
    ("core/acms/routing.py", "_pick_holder", 'if self.config.fa_selection == "round-robin":'):
        "a configuration keyword (fa_selection), not an FA",
    ("core/fa_server.py", "state",
     "return {self._fa[fa].cfg.uri: tuple(hs.values()) for fa, hs in self._holders.items()}"):
        "persistence keyed by the FA as configured (one text per FA); FaServer matches the "
        "keys it is given back by equivalence",
    ("core/fa_server.py", "_classify", "if info.request_type == REQUEST_TYPE_FA_STATUS:"):
        "an mcptt-info request type keyword, not an FA",
    ("demo.py", "legend",
     'return "\\n".join(f"  {name:<{width}}  {uri:<{uris}}  {ROLES[uri]}"'):
        "display: ROLES and PARTICIPANTS are keyed by the same constants; nothing respells them",
    ("sip/dialog.py", "_contact", 'if len(contacts) != 1 or contacts[0].strip() == "*":'):
        "the Contact wildcard '*' (RFC 3261 10.2.2), not a URI",
    ("store/base.py", "pending_for",
     "if isinstance(x, PendingItem) and x.owner == owner]"):
        "the store returns the rows the core keyed; the core chooses the owner's spelling",
    ("store/fa.py", "load_holders",
     "out.setdefault(fa, []).append(Holder(user, activated_at, expires_at))"):
        "rows grouped by the FA text the server saved (its configured spelling)",
    ("store/fa.py", "load_holders", "return {fa: tuple(hs) for fa, hs in out.items()}"):
        "the same rows, handed back to FaServer, which matches them by equivalence",
    ("runtime/fa_server.py", "__init__", "self._held: dict[str, tuple[str, ...]] = {"):
        "metrics only: the FA server core's own spellings (its loaded records), never a peer's",
    ("runtime/fa_server.py", "_perform",
     "self.metrics.holders(h.fa, self._held.get(h.fa, ()), h.holders)"):
        "metrics only: HoldersChanged carries the core's canonical FA and holder spellings",
    ("runtime/fa_server.py", "_perform", "self._held[h.fa] = h.holders"):
        "metrics only: the same core spellings, kept to count activations",
    ("runtime/metrics.py", "holders", "self._holders[fa] = len(new)"):
        "a gauge per FA of the core's own spelling (HoldersChanged); no peer text reaches it",
    ("runtime/acmc.py", "_on_message", "if sender not in self._from_acms:"):
        "a cache of exact spellings already found equal to the ACMS's identity by "
        "address_of_record just below; a spelling not in it is compared that way",
    ("runtime/base.py", "peer_for", "return self._known[uri]"):
        "a cache of _find's answer per exact Request-URI text: the same text, the same hop; "
        "an equivalent spelling is simply looked up (by equivalence) again",
    ("runtime/base.py", "peer_for", "peer = self._known[uri] = self._find(uri)"):
        "the same cache, filled with what _find answered for this text",
    ("store/pg_fa.py", "load", "return {fa: tuple(hs) for fa, hs in out.items()}"):
        "store/fa.py's rows in PostgreSQL, handed back to FaServer, which matches them by "
        "equivalence",
}

def test_no_string_comparison_of_a_uri() -> None:
    hits = [h for h in scan(package_sources())
            if (h.path, h.function, h.source) not in ALLOWED]
    assert not hits, "URIs compared as strings (use sip.uri: identity / same_identity / " \
        "uri_glob_match, or add to ALLOWED with the reason):\n" + "\n".join(map(str, hits))


def test_every_allowed_entry_is_still_needed() -> None:
    """An allow-list entry whose comparison is gone would hide the next one written there."""
    found = {(h.path, h.function, h.source) for h in scan(package_sources())}
    assert not set(ALLOWED) - found, f"stale ALLOWED entries: {sorted(set(ALLOWED) - found)}"


_BAD = '''
from fnmatch import fnmatchcase

def f(sender: str, peer, users: list[str], aor: str, d: dict[str, int], target: str) -> object:
    a = sender == peer.psi
    b = aor in users
    c = fnmatchcase(target, "sip:*@x")
    e = d[aor]
    g = {u.mc_service_id: 1 for u in users}
    h = set(users) == {"sip:a@b"}
    return a, b, c, e, g, h
'''
_GOOD = '''
from mcacm_sip.sip.uri import Uri, identity, same_identity

class Box:
    keys: dict[Uri, int]

def f(sender: str, peer, box: Box, aor: Uri, owner: str) -> object:
    sender_id = identity(sender)
    a = sender_id == identity(peer.psi)
    b = aor in box.keys
    c = same_identity(sender, owner)
    d = box.keys[identity(owner)]
    e = ":" in sender
    first, second = identity(sender), identity(owner)
    g = first == second
    h = sender is None or owner == ""
    return a, b, c, d, e, g, h
'''


def test_the_walker_finds_string_comparisons_of_uris_and_passes_uri_ones() -> None:
    sources = {"bad.py": _BAD, "good.py": _GOOD, **{
        p: t for p, t in package_sources().items() if p == "sip/uri.py"}}
    hits = scan(sources)
    assert [h.line for h in hits if h.path == "bad.py"] == [5, 6, 7, 8, 9, 10]
    assert [h for h in hits if h.path == "good.py"] == []
