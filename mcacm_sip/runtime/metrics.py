"""Prometheus metrics of every node (``[metrics] listen = "127.0.0.1:9464"``; docs/cli.md
"Metrics"): :class:`NodeMetrics` (SIP requests and answers, retransmissions, the endpoint) and
what each role adds -- :class:`AcmsMetrics`, :class:`AcmcMetrics`, :class:`FaServerMetrics`.

The ``prometheus-client`` registry is the node's own (several nodes in one process -- the lab,
tests -- each have theirs) and is served by the library's HTTP server in a daemon thread, so a
scrape never runs on the event loop.  The hot path only increments: counters inline in the SIP
trace, the MESSAGE handler and the group commit; the gauges are read at scrape time from sets
the commit keeps.  Labels are bounded (decision, docs/decisions.md "Metrics"): SIP methods we
know (else ``other``), status codes, ACM roles, Result values, decisions; never users, FAs,
peers or ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mcacm_sip.core.config import ConfigError, check_keys, get_table, get_typed
from mcacm_sip.core.events import Put, Remove, StoreChange
from mcacm_sip.core.state import Outgoing, PendingItem, Snapshot, Transaction, TxState
from mcacm_sip.runtime.base import TraceRecord
from mcacm_sip.runtime.wire import Retransmissions, summarise
from mcacm_sip.sip.aio import is_ip

log = logging.getLogger("mcacm.metrics")

METHODS = frozenset({"MESSAGE", "REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "OPTIONS",
                     "ACK", "BYE", "CANCEL", "INVITE", "INFO", "UPDATE", "PRACK", "REFER"})
"""Methods that get their own label value; any other is counted as ``other``."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0, 3600.0, 86400.0)
"""Request -> Result: milliseconds when policy decides, hours when a user does."""
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 1.0)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``[metrics]``: where to serve ``/metrics``; None: no endpoint."""

    listen: tuple[str, int] | None = None


def parse_metrics(data: Mapping[str, Any]) -> MetricsSettings:
    """``[metrics] listen = "HOST:PORT"`` (an IP address; port 0: any free one)."""
    table = get_table(data, "metrics")
    check_keys(table, {"listen"}, "metrics.")
    text = get_typed(table, "listen", "metrics.", str, "")
    if not text:
        return MetricsSettings()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not is_ip(host) or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError("metrics.listen", f"{text!r}: expected IP:PORT, e.g. "
                                            '"127.0.0.1:9464"')
    return MetricsSettings((host, int(port)))


class NodeMetrics:
    """What every node counts -- the SIP messages crossing its sockets -- and the HTTP endpoint
    serving its registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.sip_requests = Counter(
            "mcacm_sip_requests", "SIP requests sent (out) and received (in), by method; "
            "retransmissions included", ["direction", "method"], registry=r)
        self.sip_responses = Counter(
            "mcacm_sip_responses", "SIP responses sent (out) and received (in), by the method "
            "they answer and status", ["direction", "method", "status"], registry=r)
        self.sip_retransmissions = Counter(
            "mcacm_sip_retransmissions", "SIP requests we sent again (RFC 3261 17.1)",
            registry=r)
        self._retrans = Retransmissions()
        self._children: dict[tuple[str, ...], Any] = {}
        """Label values -> the counter child (bounded: the label sets are)."""
        self._server: WSGIServer | None = None
        self.address: tuple[str, int] | None = None
        """Where ``/metrics`` is served, once it is."""

    def traced(self, record: TraceRecord) -> None:
        """One SIP message crossed a socket of the node."""
        direction, s = record.direction, summarise(record.data)
        if s.status is not None:
            method = s.cseq_method or "other"
            answer: tuple[str, ...] = (direction, method if method in METHODS else "other",
                                       str(s.status))
            child = self._children.get(answer)
            if child is None:  # labels() costs a lock and a tuple: once per label set
                child = self._children[answer] = self.sip_responses.labels(*answer)
            child.inc()
            return
        key = (direction, s.method if s.method in METHODS else "other")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.sip_requests.labels(*key)
        child.inc()
        if direction == "out" and self._retrans.sent(s):
            self.sip_retransmissions.inc()

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` (a daemon thread); returns the address bound.
        Raises OSError if it cannot listen."""
        try:
            self._server, _ = start_http_server(port, host, registry=self.registry)
        except OSError as exc:  # say which of the node's addresses it was
            raise OSError(exc.errno, f"[metrics] listen {host}:{port}: "
                                     f"{exc.strerror or exc}") from None
        bound = self._server.server_address
        host, port = self.address = str(bound[0]), int(bound[1])
        log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]",
                 port, extra={"event": "node.metrics", "port": port})
        return host, port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class AcmsMetrics(NodeMetrics):
    """The metrics of one ACMS: ACM Results, latency, sheds, retries, store commits."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.shed = Counter(
            "mcacm_shed", "new ACM requests answered 503 (overload: [limits] max_in_flight; "
            "quota: per-peer and store quotas)", ["reason"], registry=r)
        self.retries = Counter(
            "mcacm_acm_retries", "ACM sends attempted again after a failure (the outbox), by "
            "purpose", ["purpose"], registry=r)
        self.results = Counter(
            "mcacm_acm_results", "final ACM Results reached, by role and Result value",
            ["role", "result"], registry=r)
        self.latency = Histogram(
            "mcacm_acm_request_result_seconds", "from a request's arrival to its Result, by "
            "role", ["role"], buckets=LATENCY_BUCKETS, registry=r)
        self.commit_time = Histogram(
            "mcacm_store_commit_seconds", "duration of one store group commit",
            buckets=COMMIT_BUCKETS, registry=r)
        self._open: dict[str, str] = {}
        """Key -> role of every transaction not done."""
        self._answered: set[str] = set()
        """Keys of transactions whose Result was counted."""
        self._pending: set[str] = set()
        open_tx = Gauge("mcacm_open_transactions", "ACM transactions not done, by role",
                        ["role"], registry=r)
        for role in ("primary", "partner"):
            open_tx.labels(role).set_function(self._counter_of(role))
        Gauge("mcacm_pending_items", "items waiting for a user or FA to log on (10.17.3.1)",
              registry=r).set_function(lambda: len(self._pending))

    def _counter_of(self, role: str) -> Callable[[], float]:
        def count() -> float:  # at scrape time, in the server's thread: on a copy
            return sum(1 for v in list(self._open.values()) if v == role)
        return count

    def restored(self, snapshot: Snapshot) -> None:
        """What the store held at start (open transactions and pending items; Results
        reached before the restart are not counted again)."""
        for tx in snapshot.transactions:
            self._transaction(tx, None)
        self._pending.update(item.key for item in snapshot.pending)

    # ------------------------------------------------------------------ inline updates

    def committed(self, changes: Iterable[StoreChange], seconds: float, now: float) -> None:
        """A group commit of ``changes`` took ``seconds``."""
        self.commit_time.observe(seconds)
        for change in changes:
            if isinstance(change, Put):
                record = change.record
                if isinstance(record, Transaction):
                    self._transaction(record, now)
                elif isinstance(record, PendingItem):
                    self._pending.add(record.key)
                elif isinstance(record, Outgoing) and record.attempts > 1 \
                        and record.next_at is None:  # the retry is being sent now
                    self.retries.labels(str(record.purpose)).inc()
            elif isinstance(change, Remove):
                if change.kind == PendingItem.KIND:
                    self._pending.discard(change.key)
                elif change.kind == Transaction.KIND:
                    self._open.pop(change.key, None)
                    self._answered.discard(change.key)

    def _transaction(self, tx: Transaction, now: float | None) -> None:
        if tx.state is TxState.DONE:
            self._open.pop(tx.key, None)
        else:
            self._open[tx.key] = str(tx.role)
        result = getattr(tx.response, "result", None)
        if result is not None and tx.key not in self._answered:
            self._answered.add(tx.key)
            if now is not None:  # (restored ones were counted before the restart)
                role = str(tx.role)
                self.results.labels(role, result.code).inc()
                self.latency.labels(role).observe(max(0.0, now - tx.created))



class AcmcMetrics(NodeMetrics):
    """The metrics of one ACMC: Results received, decisions sent, pending items downloaded."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.results = Counter(
            "mcacm_acmc_results", "final ACM Results received for our requests (a response "
            "flow), by Result value", ["result"], registry=r)
        self.decisions = Counter(
            "mcacm_acmc_decisions", "decisions on delivered requests sent to the ACMS "
            "(10.17.3.2 steps 5-7), by decision", ["decision"], registry=r)
        self.pending_downloaded = Counter(
            "mcacm_acmc_pending_items_downloaded", "pending items received in download "
            "responses (10.17.3.1)", registry=r)


class FaServerMetrics(NodeMetrics):
    """The metrics of one FA controlling server: subscriptions, holders, (de)activations.
    NOTIFYs sent are ``mcacm_sip_requests_total{direction="out",method="NOTIFY"}``."""

    def __init__(self, subscriptions: Callable[[], int]) -> None:
        super().__init__()
        r = self.registry
        self.subscribed = Counter(
            "mcacm_fa_subscriptions_accepted", "SUBSCRIBEs to an FA accepted (24.379 "
            "9A.2.2.3.4; refreshes not counted)", registry=r)
        Gauge("mcacm_fa_subscriptions", "subscriptions in force", registry=r
              ).set_function(lambda: subscriptions())
        self.changes = Counter(
            "mcacm_fa_changes", "holder changes: activated, deactivated (by the user, expiry or "
            "take-over), taken_over (24.379 9A.2.2.3.3)", ["change"], registry=r)
        self._holders: dict[str, int] = {}
        """FA -> its number of holders (FAs are configured: a bounded map)."""
        Gauge("mcacm_fa_holders", "users holding an FA, summed over the FAs", registry=r
              ).set_function(lambda: sum(list(self._holders.values())))

    def holders(self, fa: str, before: Iterable[str], after: Iterable[str]) -> None:
        """The holders of ``fa`` went from ``before`` to ``after``."""
        old, new = set(before), set(after)
        if new - old:
            self.changes.labels("activated").inc(len(new - old))
        if old - new:
            self.changes.labels("deactivated").inc(len(old - new))
        self._holders[fa] = len(new)


__all__ = ["AcmcMetrics", "AcmsMetrics", "FaServerMetrics", "MetricsSettings", "NodeMetrics",
           "parse_metrics"]
