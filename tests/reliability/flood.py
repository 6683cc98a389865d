"""A UDP flood of ACM requests (RELIABILITY.md "Overload"): ``rate`` MESSAGEs a second for
``seconds``, each a new transaction (its own Call-ID, branch and transaction id), sent
without SIP retransmissions, and a count of the final answers that came back.

    python tests/reliability/flood.py HOST PORT RATE SECONDS TEMPLATE

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

LINGER = 3.0
"""After the last MESSAGE: how long answers are still counted."""


def flood(host: str, port: int, rate: float, seconds: float, template: bytes
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

    start = time.monotonic()
    n = 0
    while (now := time.monotonic()) < start + seconds:
        due = int((now - start) * rate)
        while n < due:
            n += 1
            message = template.replace(b"NNNNNNNN", b"%08d" % n)
            sock.sendto(message, (host, port))
        drain()
        time.sleep(0.001)
    ended = time.time()
    end = time.monotonic() + LINGER
    while time.monotonic() < end:
        drain()
        time.sleep(0.01)
    sock.close()
    return {"sent": n, "answers": dict(answers), "retry_after": sorted(retry_after),
            "unanswered": n - len(answered), "ended": ended}


def main(argv: list[str]) -> int:
    host, port, rate, seconds, path = argv
    with open(path, "rb") as f:
        template = f.read()
    print(json.dumps(flood(host, int(port), float(rate), float(seconds), template)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
