"""Probes run inside a lab host's namespace (e.g. the client): `python -m lab.client http|tcp|udp-probe ...`.

Each prints one JSON object, so tests, playbooks and benchmarks read the same output."""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time


def http_get(address, port=80, path="/", timeout=2.0):
    """The agent's answer as a dict (name, counter, boot, ...)."""
    with socket.create_connection((address, port), timeout=timeout) as conn:
        conn.sendall(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[-1].decode()
    return dict(word.split("=", 1) for word in body.split())


def wait_http(address, port=80, path="/", wait=0.0, timeout=2.0):
    """Poll until the guest answers or ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return {"ok": True, "answer": http_get(address, port, path, timeout)}
        except OSError as error:
            if time.monotonic() >= deadline:
                return {"ok": False, "error": str(error)}
            time.sleep(0.5)


def udp_probe(address, port=7, interval_ms=1.0, seconds=10.0, timeout_ms=1000.0):
    """Send a numbered datagram every ``interval_ms`` for ``seconds``; record when each echo came back.

    Returns send times and round-trip times (ms, None for lost), from which callers compute blackouts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((address, port))
    sock.setblocking(False)
    start = time.monotonic()
    count = int(seconds * 1000 / interval_ms)
    sent, rtt = [], [None] * count
    for seq in range(count):
        target = start + seq * interval_ms / 1000
        while (now := time.monotonic()) < target:
            _drain(sock, rtt)
        sent.append(now - start)
        try:
            sock.send(struct.pack("!Id", seq, now))
        except OSError:
            pass
        _drain(sock, rtt)
    end = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < end:
        _drain(sock, rtt)
    return {"interval_ms": interval_ms, "sent_s": sent, "rtt_ms": rtt}


def _drain(sock, rtt):
    while True:
        try:
            data = sock.recv(64)
        except BlockingIOError:
            return
        except OSError:
            # An ICMP error for an earlier datagram (port or host unreachable, e.g. while the guest's MAC moves
            # during a long blackout): that answer is lost; the probe goes on.
            continue
        seq, sent_at = struct.unpack("!Id", data[:12])
        if seq < len(rtt) and rtt[seq] is None:
            rtt[seq] = (time.monotonic() - sent_at) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.client")
    parser.add_argument("action", choices=("http", "udp-probe"))
    parser.add_argument("address")
    parser.add_argument("--port", type=int)
    parser.add_argument("--path", default="/")
    parser.add_argument("--wait", type=float, default=0.0, help="http: keep trying this many seconds")
    parser.add_argument("--seconds", type=float, default=10.0, help="udp-probe: how long")
    parser.add_argument("--interval-ms", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.action == "http":
        result = wait_http(args.address, args.port or 80, args.path, args.wait)
    else:
        result = udp_probe(args.address, args.port or 7, args.interval_ms, args.seconds)
    json.dump(result, sys.stdout)
    print()
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
