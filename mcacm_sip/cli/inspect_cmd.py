"""``mcacm inspect CONFIG`` (or ``--store PATH``): what an ACMS holds -- open transactions
with their step and next timer, pending items, sends waiting for an outcome, migrations,
registrations -- read from its SQLite store without disturbing the running node
(:mod:`mcacm_sip.store.inspect`).  ``--transaction ID`` answers "where is request X?".
For an FA server (its TOML, or its store): the holders of each FA (24.379 9A.2.2.3.2).

Exit codes: 0 shown; 1 ``--transaction`` matched nothing; 2 usage; 65 the file is not an
mcacm-sip store; 66 the store cannot be read (missing, no permission); 78 bad configuration
(or one without ``[store] path``, an ACMC's, a PostgreSQL ``[store] url``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from datetime import UTC, datetime
from typing import Any

from mcacm_sip.acm.fa import EXPIRES_UNTIL_WITHDRAWN
from mcacm_sip.acm.model import (
    AcmRequest,
    GroupMembershipUpdateRequest,
    InterconnectionGroupProvisionRequest,
)
from mcacm_sip.cli.main import EX_CONFIG, EX_FAILED, EX_OK, EX_USAGE, CliError, _load, command
from mcacm_sip.core.config import ConfigError
from mcacm_sip.core.state import Outgoing, PendingItem, Transaction, TxState
from mcacm_sip.runtime.config import load_acms_node, load_fa_server_node, read_toml
from mcacm_sip.runtime.reference import detect_role
from mcacm_sip.store.inspect import (
    WAITING_FOR,
    FaView,
    NotAStore,
    StoreView,
    is_fa_store,
    read_fa_store,
    read_store,
)
from mcacm_sip.text import printable

EX_DATAERR, EX_NOINPUT = 65, 66


def _when(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _in(t: float | None, now: float) -> float | None:
    return None if t is None else round(t - now, 1)


def _tx_json(tx: Transaction, view: StoreView, now: float) -> dict[str, Any]:
    pending = [p for p in view.pending if p.tx_key == tx.key]
    return {
        "role": str(tx.role), "transaction_id": tx.transaction_id,
        "leg_id": tx.leg_id or None, "flow": tx.request.FLOW,
        "requester": tx.request.requester.mc_service_id, "peer": tx.peer,
        "state": str(tx.state), "waiting_for": WAITING_FOR.get(tx.state),
        "assignee": tx.assignee, "created": _when(tx.created),
        "next_timer": _when(tx.deadline), "next_timer_in_s": _in(tx.deadline, now),
        "result": getattr(getattr(tx.response, "result", None), "code", None),
        "pending_for": pending[0].owner if pending else None,
        "sends": [_send_json(o, now) for o in view.outgoing if o.tx_key == tx.key],
        "group": _group_json(tx.request),
    }


def _group_json(request: AcmRequest) -> dict[str, Any] | None:
    """What a group-related request (23.280 10.17.4) is about; None for any other.  The
    primary keeps nothing of it beyond the transaction (docs/decisions.md "Group-related
    ACM"), so this is where its operator sees it."""
    if isinstance(request, GroupMembershipUpdateRequest):
        return {"groups": [request.group_id], "operation": str(request.operation),
                "urgency": None if request.urgency is None else str(request.urgency),
                "users": list(request.users)}
    if isinstance(request, InterconnectionGroupProvisionRequest):
        return {"groups": list(request.groups), "operation": None, "urgency": None,
                "users": []}
    return None


def _send_json(o: Outgoing, now: float) -> dict[str, Any]:
    return {"send_id": o.send_id, "purpose": str(o.purpose), "to": o.to, "flow": o.flow.FLOW,
            "attempts": o.attempts, "in_flight": o.next_at is None,
            "next_attempt": _when(o.next_at), "next_attempt_in_s": _in(o.next_at, now),
            "give_up": _when(o.give_up_at)}


def _pending_json(p: PendingItem) -> dict[str, Any]:
    return {"owner": p.owner, "is_fa": p.is_fa, "flow": p.flow.FLOW,
            "transaction_id": p.flow.transaction_id, "since": _when(p.created)}


def view_json(view: StoreView, now: float, transaction: str | None = None,
              show_done: bool = False) -> dict[str, Any]:
    """The store as JSON-ready data; with ``transaction``, only what concerns that id."""
    txs = view.transactions
    if transaction is not None:
        txs = [t for t in txs if transaction in (t.transaction_id, t.leg_id)]
        keys = {t.key for t in txs}
        pending = [p for p in view.pending if p.tx_key in keys]
        sends = [o for o in view.outgoing if o.tx_key in keys]
    else:
        pending, sends = view.pending, view.outgoing
    open_txs = [t for t in txs if t.state is not TxState.DONE]
    return {
        "store": view.path, "schema": view.schema, "read_at": _when(now),
        "counts": {"open_transactions": len([t for t in view.transactions
                                             if t.state is not TxState.DONE]),
                   "done_transactions": len([t for t in view.transactions
                                             if t.state is TxState.DONE]),
                   "pending": len(view.pending), "sends": len(view.outgoing),
                   "mappings": len(view.mappings), "registrations": len(view.registrations)},
        "transactions": [_tx_json(t, view, now)
                         for t in (txs if show_done or transaction else open_txs)],
        "pending": [_pending_json(p) for p in pending],
        "sends": [_send_json(o, now) for o in sends],
        "mappings": [] if transaction else [
            {"side": str(m.side), "peer": m.peer, "primary_id": m.primary_id,
             "partner_id": m.partner_id, "removed": m.removed} for m in view.mappings],
        "registrations": [] if transaction else [
            {"aor": aor, "contact": contact, "expires": _when(exp),
             "expires_in_s": _in(exp, now)} for aor, contact, exp in view.registrations],
        "unreadable": view.unreadable,
    }


def view_text(doc: dict[str, Any], transaction: str | None) -> str:
    c = doc["counts"]
    lines = [f"store {doc['store']} (schema {doc['schema']}), read {doc['read_at']}",
             f"  {c['open_transactions']} open transaction(s), {c['done_transactions']} done, "
             f"{c['pending']} pending item(s), {c['sends']} send(s) without outcome, "
             f"{c['mappings']} mapping(s), {c['registrations']} registration(s)"]
    title = f"transaction {transaction}" if transaction else "open transactions"
    lines += ["", f"{title}:"] + (["  (none)"] if not doc["transactions"] else [])
    for t in doc["transactions"]:
        lines.append(f"  {t['transaction_id']}  {t['role']}  {t['flow']}  from "
                     f"{t['requester']}" + (f" (leg id {t['leg_id']})" if t["leg_id"] else ""))
        lines.append(f"    state     {t['state']}: waiting for {t['waiting_for']}")
        lines.append(f"    timer     {t['next_timer']} (in {t['next_timer_in_s']:g} s)")
        lines.append(f"    peer      {t['peer']}" + (f", assigned to {t['assignee']}"
                                                      if t["assignee"] else ""))
        if t["pending_for"]:
            lines.append(f"    pending   for {t['pending_for']} (10.17.3.1)")
        if t["group"] is not None:
            g = t["group"]
            lines.append("    groups    " + ", ".join(g["groups"]))
            if g["operation"] is not None:
                lines.append(f"    operation {g['operation']} " + ", ".join(g["users"])
                             + (f" (urgency {g['urgency']})" if g["urgency"] else ""))
        if t["result"]:
            lines.append(f"    result    {t['result']}")
        for s in t["sends"]:
            lines.append(f"    send      {s['purpose']} {s['flow']} to {s['to']}, attempt "
                         f"{s['attempts']}, " + ("in flight" if s["in_flight"] else
                                                 f"next at {s['next_attempt']}"))
    if doc["pending"] and not transaction:
        lines += ["", "pending items (10.17.3.1):"]
        lines += [f"  {p['owner']}{' (FA)' if p['is_fa'] else ''}: {p['flow']} "
                  f"{p['transaction_id']} since {p['since']}" for p in doc["pending"]]
    if doc["registrations"]:
        lines += ["", "registrations (logged-on ACMCs):"]
        lines += [f"  {r['aor']} at {r['contact']}, "
                  + (f"expires {r['expires']}" if r["expires_in_s"] > 0 else
                     f"expired {r['expires']} (not logged on)") for r in doc["registrations"]]
    if doc["mappings"]:
        lines += ["", "migrations (10.17.5 mappings):"]
        lines += [f"  {m['side']}: {m['primary_id']} -> {m['partner_id']} at {m['peer']}"
                  + (" (removed)" if m["removed"] else "") for m in doc["mappings"]]
    if doc["unreadable"]:
        lines += ["", "unreadable rows:"] + [f"  {u}" for u in doc["unreadable"]]
    return "\n".join(printable(line) for line in lines) + "\n"


def fa_view_json(view: FaView, now: float) -> dict[str, Any]:
    """An FA server's store as JSON-ready data."""
    return {
        "store": view.path, "node": "fa-server", "schema": view.schema, "read_at": _when(now),
        "counts": {"functional_aliases": len(view.holders),
                   "holders": sum(len(hs) for hs in view.holders.values())},
        "functional_aliases": [
            {"fa": fa, "holders": [
                {"user": h.user, "activated": _when(h.activated_at),
                 "expires": _when(h.expires_at), "expires_in_s": _in(h.expires_at, now),
                 # 9A.2.2.3.3: Expires 4294967295 activates until the user withdraws it; the
                 # store keeps now + Expires as a float, whose difference can come out a few
                 # microseconds short (half a second of slack: Expires is whole seconds)
                 "until_withdrawn":
                     h.expires_at - h.activated_at >= EXPIRES_UNTIL_WITHDRAWN - 0.5}
                for h in holders]}
            for fa, holders in sorted(view.holders.items())],
    }


def fa_view_text(doc: dict[str, Any]) -> str:
    c = doc["counts"]
    lines = [f"FA server store {doc['store']} (schema {doc['schema']}), read {doc['read_at']}",
             f"  {c['functional_aliases']} functional alias(es) with holders, {c['holders']} "
             "holder(s)", "", "holders (24.379 9A.2.2.3.2), oldest activation first:"]
    lines += ["  (none)"] if not doc["functional_aliases"] else []
    for entry in doc["functional_aliases"]:
        lines.append(f"  {entry['fa']}")
        lines += [f"    {h['user']}  since {h['activated']}, "
                  + ("until withdrawn" if h["until_withdrawn"] else f"expires {h['expires']}")
                  for h in entry["holders"]]
    lines += ["", "subscriptions are not stored (kept in memory; the subscribers re-subscribe "
              "after a restart): see the node's mcacm_fa_subscriptions metric."]
    return "\n".join(printable(line) for line in lines) + "\n"


def _store_path(args: argparse.Namespace) -> tuple[str, str]:
    """(the store's path, the node it belongs to: acms | fa-server)."""
    if (args.config is None) == (args.store is None):
        raise CliError(EX_USAGE, "give CONFIG (an ACMS's or FA server's TOML) or --store PATH, "
                                 "not both")
    if args.store is not None:
        try:
            return str(args.store), "fa-server" if is_fa_store(args.store) else "acms"
        except FileNotFoundError:
            return str(args.store), "acms"  # said below, as for an ACMS's store
    try:
        role = detect_role(read_toml(args.config))
    except ConfigError as exc:
        raise CliError(EX_CONFIG, f"{args.config}: {exc}") from None
    if role == "acmc":
        raise CliError(EX_CONFIG, f"{args.config}: an ACMC keeps no store; inspect its ACMS's "
                                  "configuration (its pending items, its registration)")
    if role == "fa-server":
        fa = _load(load_fa_server_node, args.config)
        if fa.store_url is not None:
            raise CliError(EX_CONFIG, f"{args.config}: [store] url: PostgreSQL; inspect reads "
                                      "SQLite stores (query the fa_holders table with psql)")
        if fa.store_path is None:
            raise CliError(EX_CONFIG, f"{args.config}: no [store] path: an FA server without "
                                      "one keeps its holders in memory, which cannot be "
                                      "inspected")
        return fa.store_path, role
    config = _load(load_acms_node, args.config)
    path = config.acms.store.path
    if not path:
        raise CliError(EX_CONFIG, f"{args.config}: no [store] path: an ACMS without one keeps "
                                  "its state in memory, which cannot be inspected")
    return str(path), role


def cmd_inspect(args: argparse.Namespace) -> int:
    path, role = _store_path(args)
    if role == "fa-server" and (args.transaction is not None or args.all):
        raise CliError(EX_USAGE, "--transaction and --all are for an ACMS's store; an FA "
                                 "server's holds FA holders only")
    try:
        view: StoreView | FaView = read_fa_store(path) if role == "fa-server" \
            else read_store(path)
    except FileNotFoundError:
        raise CliError(EX_NOINPUT, f"{path}: no such store (has the node started with this "
                                   "[store] path?)") from None
    except NotAStore as exc:
        raise CliError(EX_DATAERR, str(exc)) from None
    except sqlite3.Error as exc:
        raise CliError(EX_NOINPUT, f"{path}: cannot read: {exc}") from None
    if isinstance(view, FaView):
        fa_doc = fa_view_json(view, time.time())
        if args.json:
            print(json.dumps(fa_doc, indent=2))
        else:
            sys.stdout.write(fa_view_text(fa_doc))
        return EX_OK
    doc = view_json(view, time.time(), args.transaction, args.all)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        sys.stdout.write(view_text(doc, args.transaction))
    if args.transaction is not None and not doc["transactions"]:
        print(f"mcacm inspect: no transaction {args.transaction} in {path} (finished ones are "
              "pruned once done)", file=sys.stderr)
        return EX_FAILED
    return EX_OK


@command("inspect", "show what an ACMS holds: open transactions, pending items, migrations, "
                    "registrations; or an FA server: its holders (safe while it runs)",
         "examples:\n"
         "  mcacm inspect examples/config/partner/acms.toml\n"
         "  mcacm inspect --store partner-acms.sqlite --json\n"
         "  mcacm inspect examples/config/partner/acms.toml --transaction 7d1c...\n"
         "  mcacm inspect examples/config/partner/fa-server.toml --json\n"
         "The store is opened read-only; a running ACMS is not slowed or blocked.\n"
         "exit codes: 0 shown, 1 --transaction matched nothing, 2 usage, 65 not an mcacm-sip\n"
         "store, 66 cannot read the store, 78 bad configuration or no [store] path.",
         run=cmd_inspect)
def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", metavar="CONFIG",
                   help="the ACMS's or FA server's TOML configuration")
    p.add_argument("--store", metavar="PATH", help="the SQLite store itself, instead of CONFIG")
    p.add_argument("--transaction", metavar="ID",
                   help="only this transaction (its id at either leg): where is request ID?")
    p.add_argument("--all", action="store_true", help="list finished transactions too")
    p.add_argument("--json", action="store_true", help="print one JSON object")


__all__ = ["cmd_inspect", "fa_view_json", "view_json"]
