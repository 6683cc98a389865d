"""A UDP flood of ACM requests (RELIABILITY.md "Overload"): ``rate`` MESSAGEs a second for
``seconds``, each a new transaction (its own Call-ID, branch and transaction id), sent
without SIP retransmissions, and a count of the final answers that came back.

    python tests/reliability/flood.py HOST PORT RATE SECONDS TEMPLATE [--above-capacity]

``--above-capacity``: what the ACMS can take is found in the same run rather than assumed
(a machine twice as fast takes twice the rate).  ``rate`` is then where a ramp starts: it
doubles every second until the first 503 comes back (the ACMS says it is over its limit, so
the rate it drew that 503 from is above its capacity), then holds ``HOLD`` times that rate
for ``seconds``.  No 503 up to ``MAX_RATE``: the flood ends and says so (``"held": null``).
The line ``flood ended`` is printed when the last MESSAGE has gone, before the JSON.

TEMPLATE: a file holding one request MESSAGE whose ``NNNNNNNN`` marks are replaced by the
running number (eight digits: the Content-Length stays right) and ``@ME@`` by the sender's
address (Via: the answers come back to it).  Prints one JSON object: ``{"sent": n,
"answers": {"200": n, "503": n, ...}, "retry_after": [...distinct values...],
"unanswered": n, "ended": <wall clock of the last send>}``.  Runs as its own process so
the blasting does not slow the ACMC the test plays.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable

LINGER = 3.0
"""After the last MESSAGE: how long answers are still counted."""
HOLD = 3.0
"""--above-capacity: the held rate, in multiples of the ramp step that drew the first 503."""
MAX_RATE = 80_000.0
"""--above-capacity: the ramp gives up past this rate."""


def flood(host: str, port: int, rate: float, seconds: float, template: bytes,
          above_capacity: bool = False, on_end: Callable[[], None] = lambda: None
          ) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    me = f"127.0.0.1:{sock.getsockname()[1]}".encode()
    template = template.replace(b"@ME@", me)
    answers: Counter[str] = Counter()
    retry_after: set[str] = set()
    answered: set[bytes] = set()

    def drain() -> None:
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            call_id = next((line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                            if line.lower().startswith(b"call-id:")), b"")
            status = data.split(b" ", 2)[1].decode()
            if status.startswith("1") or call_id in answered:
                continue  # provisional, or a retransmitted final answer
            answered.add(call_id)
            answers[status] += 1
            for line in data.split(b"\r\n"):
                if line.lower().startswith(b"retry-after:"):
                    retry_after.add(line.split(b":", 1)[1].strip().decode())

    steps: list[float] = []  # the ramp's rates, then the held one
    held: float | None = None if above_capacity else rate
    n = 0
    while True:
        # one step: ``rate`` from ``start`` on; the ramp's steps last 1 s, the hold ``seconds``
        start, sent = time.monotonic(), n
        steps.append(rate)
        while (now := time.monotonic()) < start + (seconds if held is not None else 1.0):
            due = sent + int((now - start) * rate)
            while n < due:
                n += 1
                message = template.replace(b"NNNNNNNN", b"%08d" % n)
                sock.sendto(message, (host, port))
            drain()
            if held is None and answers["503"]:
                break
            time.sleep(0.001)
        if held is not None:
            break
        if answers["503"]:
            held = rate = rate * HOLD
        elif rate * 2 > MAX_RATE:
            break
        else:
            rate *= 2
    ended = time.time()
    on_end()
    end = time.monotonic() + LINGER
    while time.monotonic() < end:
        drain()
        time.sleep(0.01)
    sock.close()
    return {"sent": n, "answers": dict(answers), "retry_after": sorted(retry_after),
            "unanswered": n - len(answered), "ended": ended, "steps": steps, "held": held}


def main(argv: list[str]) -> int:
    above_capacity = "--above-capacity" in argv
    host, port, rate, seconds, path = [a for a in argv if a != "--above-capacity"]
    with open(path, "rb") as f:
        template = f.read()
    figures = flood(host, int(port), float(rate), float(seconds), template, above_capacity,
                    lambda: print("flood ended", flush=True))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
