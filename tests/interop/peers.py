"""Real SIP peers on 127.0.0.1: Kamailio and SIPp, started on free ports and stopped by PID.

Used by the interop tests (tests/interop/test_*.py) and by the benchmarks (bench/_common.py puts
this directory on sys.path), so it imports nothing from pytest.

Process hygiene (docs/decisions.md, "Interop tests"):
- every peer runs in a session of its own (its PID is its process group id) and gets SIGTERM if
  the Python thread that started it dies (PR_SET_PDEATHSIG), so a killed test run leaves nothing;
- `stop()` signals that group (SIGTERM, then SIGKILL after a grace period) and reaps it; every
  starter below is a context manager or a bounded run that calls it in a `finally`.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LOOPBACK = "127.0.0.1"
SIP_DIR = Path(__file__).resolve().parent / "sip"

SippTransport = Literal["udp", "tcp"]
_SIPP_T = {"udp": "u1", "tcp": "t1"}  # one socket for all calls: one source address to assert on


class PeerError(RuntimeError):
    """A peer did not start, did not become ready, or did not finish in time."""


def missing_tools(*tools: str) -> list[str]:
    """The named executables that are not on PATH."""
    import shutil

    return [t for t in tools if shutil.which(t) is None]


# --- ports ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (bound with port 0, released).

    Kamailio and SIPp listen on one port for both transports, so both must be free.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise PeerError("no port free for both UDP and TCP on 127.0.0.1")


def _bound(port: int, transport: SippTransport) -> bool:
    """Whether some socket is bound (UDP) or listening (TCP) on `port`, read from /proc/net.

    Reading the tables never binds, so the check cannot race the peer for its port.
    """
    for table in (f"/proc/net/{transport}", f"/proc/net/{transport}6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)  # header
            for line in f:
                fields = line.split()
                local, state = fields[1], fields[3]
                if int(local.rsplit(":", 1)[1], 16) == port and (
                    transport == "udp" or state == "0A"  # 0A = TCP_LISTEN
                ):
                    return True
    return False


# --- processes -----------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: Sequence[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout+stderr to `log`, in its own session, dying with this thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits: start long-lived peers from the
    main thread (or a thread that outlives them).
    """
    with open(log, "wb") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            preexec_fn=_die_with_parent,  # setsid + PDEATHSIG: nothing outlives the run
        )


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a spawned peer by its PID (= its process group id): SIGTERM, then SIGKILL; reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    else:  # main process gone: make sure no child of it is left in its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str,
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise PeerError(f"{what} exited with {proc.returncode} before it was ready:\n"
                            f"{_tail(log)}")
        if time.monotonic() > deadline:
            raise PeerError(f"{what} not ready after {timeout} s:\n{_tail(log)}")
        time.sleep(0.02)


# --- SIP probe -----------------------------------------------------------------------------------


def sip_ping(port: int, host: str = LOOPBACK, wait: float = 0.2) -> str | None:
    """Send OPTIONS with Max-Forwards: 0 over UDP; the status line of any answer, or None.

    A proxy answers 483 (RFC 3261 16.3 step 2) without forwarding, so this probes the proxy
    itself.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        s.settimeout(wait)
        me = s.getsockname()[1]
        tag = uuid.uuid4().hex[:12]
        req = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{me};branch=z9hG4bK-ping{tag};rport\r\n"
            "Max-Forwards: 0\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: ping-{tag}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        s.sendto(req, (host, port))
        try:
            data = s.recv(65535)
        except OSError:
            return None
        return data.split(b"\r\n", 1)[0].decode(errors="replace")


# --- Kamailio ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kamailio:
    port: int
    pid: int
    log: Path
    defines: tuple[str, ...]

    @property
    def uri(self) -> str:
        """The proxy as a loose-routing next hop (outbound proxy / Route value)."""
        return f"sip:{LOOPBACK}:{self.port};lr"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def kamailio(workdir: Path, *, defines: Sequence[str] = (), shm_mb: int = 256,
             ready_timeout: float = 10.0) -> Iterator[Kamailio]:
    """Kamailio as a stateful record-routing proxy on a free port (sip/kamailio.cfg.in).

    `defines`: "STRICT_INDIALOG", "SL_ONLY", "FORCE_TCP" (passed as -A). Ready when it answers
    OPTIONS with Max-Forwards: 0. Stopped by PID on exit from the block, whatever happened.
    """
    port = free_port()
    run = workdir / f"kamailio-{port}"
    run.mkdir(parents=True)
    cfg = run / "kamailio.cfg"
    cfg.write_text((SIP_DIR / "kamailio.cfg.in").read_text().replace("@@PORT@@", str(port)))
    argv = ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", str(shm_mb), "-M", "8",
            "-Y", str(run), "-P", str(run / "kamailio.pid")]
    for d in defines:
        argv += ["-A", d]
    log = run / "kamailio.log"
    proc = spawn(argv, log)
    try:
        _wait_until(lambda: sip_ping(port) is not None, proc, log, "kamailio", ready_timeout)
        yield Kamailio(port=port, pid=proc.pid, log=log, defines=tuple(defines))
    finally:
        stop(proc)


# --- SIPp ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SippStats:
    """The cumulative counters of the last line of a `sipp -trace_stat` CSV."""

    successful: int
    failed: int
    retransmissions: int
    created: int
    elapsed: float  # seconds from sipp's start to its last statistics line
    row: Mapping[str, str]

    @property
    def rate(self) -> float:
        """Achieved successful calls per second over sipp's elapsed time."""
        return self.successful / self.elapsed if self.elapsed > 0 else 0.0


def _epoch(value: str) -> float:
    # "2026-11-26\t00:36:59.249092\t1795653419.249092": date, time, epoch seconds
    return float(value.split("\t")[-1])


def read_stats(path: Path) -> SippStats:
    """Parse a sipp statistics CSV (`-trace_stat -stf path`): ';'-separated, header first."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        raise PeerError(f"sipp wrote no statistics to {path}")
    row = dict(zip(rows[0], rows[-1], strict=False))

    def count(name: str) -> int:
        return int(row[f"{name}(C)"])

    return SippStats(
        successful=count("SuccessfulCall"),
        failed=count("FailedCall"),
        retransmissions=count("Retransmissions"),
        created=int(row["TotalCallCreated"]),
        elapsed=_epoch(row["CurrentTime"]) - _epoch(row["StartTime"]),
        row=row,
    )


@dataclass(frozen=True)
class SippRun:
    """A finished sipp UAC: exit code (0 = every call succeeded), statistics, logs."""

    rc: int
    stats: SippStats
    log: Path
    errors: Path
    messages: Path | None

    def explain(self) -> str:
        """Diagnostics for an assertion message."""
        errs = _tail(self.errors, 40) if self.errors.exists() else "(no unexpected messages)"
        return (f"sipp rc={self.rc} successful={self.stats.successful} "
                f"failed={self.stats.failed} retrans={self.stats.retransmissions}\n"
                f"--- sipp output ---\n{_tail(self.log)}\n--- unexpected messages ---\n{errs}")


def _sipp_base(scenario: str, workdir: Path, name: str, transport: SippTransport,
               port: int, keys: Mapping[str, str]) -> list[str]:
    argv = ["sipp", "-sf", str(SIP_DIR / scenario), "-i", LOOPBACK, "-p", str(port),
            "-t", _SIPP_T[transport], "-nostdin",
            "-default_behaviors", "all,-bye",  # no BYE after an aborted call: nothing is INVITE
            # socket buffers of 4 MiB (sipp's default is 64 KiB; the kernel caps it at rmem_max):
            # under load the generator must not be the one dropping datagrams
            "-buff_size", str(4 << 20),
            "-trace_err", "-error_file", str(workdir / f"{name}.errors.log")]
    for k, v in keys.items():
        argv += ["-key", k, v]
    return argv


def run_sipp(scenario: str, target: tuple[str, int], workdir: Path, *, calls: int,
             rate: float = 100.0, transport: SippTransport = "udp", proxy: int | None = None,
             service: str = "acms", keys: Mapping[str, str] = {},
             trace_msg: bool = False, timeout: float = 20.0,
             extra: Sequence[str] = ()) -> SippRun:
    """Run a sipp UAC scenario to completion (`-m calls -r rate`) and return its outcome.

    `proxy`: a local proxy port to send everything through (-rsa), the Request-URI still naming
    `target`. Bounded by `timeout` (sipp's own -timeout plus a margin, then it is killed).
    Blocking: from asyncio code call it with `asyncio.to_thread` (the worker thread outlives
    the run, so PR_SET_PDEATHSIG does not fire early).
    """
    name = f"uac-{uuid.uuid4().hex[:8]}"
    stats = workdir / f"{name}.csv"
    log = workdir / f"{name}.log"
    argv = _sipp_base(scenario, workdir, name, transport, free_port(), keys)
    argv += ["-s", service, "-m", str(calls), "-r", str(rate), "-rp", "1000",
             "-timeout", f"{timeout}s", "-timeout_error", "-recv_timeout", "6000",
             "-trace_stat", "-stf", str(stats), "-fd", "1"]
    messages = workdir / f"{name}.messages.log" if trace_msg else None
    if messages is not None:
        argv += ["-trace_msg", "-message_file", str(messages)]
    if proxy is not None:
        argv += ["-rsa", f"{LOOPBACK}:{proxy}"]
    argv += [*extra, f"{target[0]}:{target[1]}"]
    proc = spawn(argv, log, cwd=workdir)
    try:
        rc = proc.wait(timeout + 10)
    except subprocess.TimeoutExpired as e:
        raise PeerError(f"sipp did not finish within {timeout + 10} s:\n{_tail(log)}") from e
    finally:
        stop(proc)
    if not stats.exists():
        raise PeerError(f"sipp exited {rc} without statistics:\n{_tail(log)}")
    return SippRun(rc=rc, stats=read_stats(stats), log=log,
                   errors=workdir / f"{name}.errors.log", messages=messages)


@dataclass(frozen=True)
class SippServer:
    port: int
    pid: int
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)


@contextlib.contextmanager
def sipp_uas(workdir: Path, scenario: str = "uas_message.xml", *,
             transport: SippTransport = "udp", ready_timeout: float = 10.0,
             extra: Sequence[str] = ()) -> Iterator[SippServer]:
    """A sipp UAS on a free port; ready once its socket is bound; stopped by PID on exit."""
    port = free_port()
    name = f"uas-{port}"
    log = workdir / f"{name}.log"
    argv = _sipp_base(scenario, workdir, name, transport, port, {}) + list(extra)
    proc = spawn(argv, log, cwd=workdir)
    try:
        _wait_until(lambda: _bound(port, transport), proc, log, "sipp UAS", ready_timeout)
        yield SippServer(port=port, pid=proc.pid, log=log)
    finally:
        stop(proc)


# --- Kamailio as the SIP core of both systems (examples/interop/kamailio) ------------------------

CORE_DIR = Path(__file__).resolve().parents[2] / "examples" / "interop" / "kamailio"


@dataclass(frozen=True)
class SipCore:
    """examples/interop/kamailio/kamailio.cfg running: UDP and TCP on `port`, TLS on
    `tls_port` (when started with a tls.cfg)."""

    port: int
    tls_port: int | None
    pid: int
    log: Path

    def uri(self, transport: str) -> str:
        """The core as hop `*` of our nodes over `transport` (udp, tcp, tls)."""
        if transport == "tls":
            return f"sip:{LOOPBACK}:{self.tls_port};transport=tls"
        return f"sip:{LOOPBACK}:{self.port}" + ("" if transport == "udp" else ";transport=tcp")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def core_argv(cfg: Path, run: Path, defines: Mapping[str, str | None],
              shm_mb: int = 64) -> list[str]:
    """The kamailio command line of the SIP core: foreground, private runtime directory,
    `-A NAME` / `-A NAME=value` per define."""
    argv = ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", str(shm_mb), "-M", "8",
            "-Y", str(run), "-P", str(run / "kamailio.pid")]
    for name, value in defines.items():
        argv += ["-A", name if value is None else f"{name}={value}"]
    return argv


@contextlib.contextmanager
def sip_core(workdir: Path, routes: Mapping[str, str], *, tls_config: Path | None = None,
             ready_timeout: float = 10.0) -> Iterator[SipCore]:
    """The shipped SIP core config on free ports, its routing table pointed by `routes`
    (define -> next-hop URI: PRIMARY_ACMS, PARTNER_ACMS, PARTNER_FA); TLS too when
    `tls_config` (a tls.cfg) is given.  Ready when it answers OPTIONS with Max-Forwards: 0;
    stopped by PID on exit from the block."""
    port = free_port()
    tls_port = free_port() if tls_config is not None else None
    run = workdir / f"sip-core-{port}"
    run.mkdir(parents=True)
    defines: dict[str, str | None] = {"SIP_PORT": str(port)}
    defines.update({name: f'"{uri}"' for name, uri in routes.items()})
    if tls_config is not None:
        defines.update({"WITH_TLS": None, "TLS_PORT": str(tls_port),
                        "TLS_CONFIG": f'"{tls_config}"'})
    log = run / "kamailio.log"
    proc = spawn(core_argv(CORE_DIR / "kamailio.cfg", run, defines), log)
    try:
        ready = (lambda: sip_ping(port) is not None and _bound(tls_port, "tcp")
                 ) if tls_port is not None else (lambda: sip_ping(port) is not None)
        _wait_until(ready, proc, log, "kamailio (SIP core)", ready_timeout)
        yield SipCore(port=port, tls_port=tls_port, pid=proc.pid, log=log)
    finally:
        stop(proc)


# --- SIPp playing a foreign system (examples/interop/sipp) ---------------------------------------

FOREIGN_DIR = Path(__file__).resolve().parents[2] / "examples" / "interop" / "sipp"


@dataclass
class Foreign:
    """A running sipp scenario of examples/interop/sipp (a foreign ACMS, ACMC or FA server)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    errors: Path
    messages: Path
    transport: SippTransport = "udp"

    @property
    def uri(self) -> str:
        """Where our nodes reach it (a hop URI)."""
        return f"sip:{LOOPBACK}:{self.port}" + (";transport=tcp" if self.transport == "tcp"
                                                else "")

    def wait(self, timeout: float) -> int:
        """Its exit code (0: every check of the scenario passed); blocking."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise PeerError(f"sipp did not finish within {timeout} s:\n{self.explain()}") from e

    def explain(self) -> str:
        return (f"--- sipp output ---\n{_tail(self.log)}\n--- errors ---\n{_tail(self.errors)}"
                f"\n--- messages ---\n{_tail(self.messages, 80)}")


def foreign_argv(scenario: str, port: int, keys: Mapping[str, str], *,
                 target: tuple[str, int] | None = None, inbox: bool = False,
                 transport: SippTransport = "udp", timeout: float = 20.0,
                 extra: Sequence[str] = ()) -> list[str]:
    """The documented command line of a foreign-system scenario (examples/interop/README.md):
    one call (-m 1), bounded by -timeout (then exit code 1), keys as -key."""
    argv = ["sipp", "-sf", str(FOREIGN_DIR / scenario), "-i", LOOPBACK, "-p", str(port),
            "-t", _SIPP_T[transport], "-m", "1", "-nostdin",
            "-timeout", f"{timeout}s", "-timeout_error"]
    if inbox:
        argv += ["-oocsf", str(FOREIGN_DIR / "inbox.xml")]
    for k, v in keys.items():
        argv += ["-key", k, v]
    argv += list(extra)
    if target is not None:
        argv.append(f"{target[0]}:{target[1]}")
    return argv


@contextlib.contextmanager
def foreign(workdir: Path, scenario: str, keys: Mapping[str, str], *,
            target: tuple[str, int] | None = None, inbox: bool = False,
            transport: SippTransport = "udp", timeout: float = 20.0,
            extra: Sequence[str] = (), ready_timeout: float = 10.0) -> Iterator[Foreign]:
    """Start a foreign-system scenario on a free port; ready once its socket is bound (a UAC
    starts sending at once); stopped by PID on exit from the block."""
    port = free_port()
    name = f"{Path(scenario).stem}-{port}"
    log, errors, messages = (workdir / f"{name}.{x}.log" for x in ("out", "errors", "messages"))
    argv = foreign_argv(scenario, port, keys, target=target, inbox=inbox, transport=transport,
                        timeout=timeout, extra=[*extra, "-trace_err", "-error_file", str(errors),
                                                "-trace_msg", "-message_file", str(messages)])
    proc = spawn(argv, log, cwd=workdir)
    try:
        _wait_until(lambda: _bound(port, transport), proc, log, f"sipp {scenario}",
                    ready_timeout)
        yield Foreign(port, proc, log, errors, messages, transport)
    finally:
        stop(proc)
