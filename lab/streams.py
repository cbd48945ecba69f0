"""Long-lived TCP streams and DNS lookups, run inside a lab host's namespace (the remote client) while a guest
moves: `python -m lab.streams tcp|resolve ...`; each prints one JSON object.

tcp: N connections to the guest's TCP echo (port 7), each sending numbered, checksummed records at a steady rate and
checking what comes back: the records must return complete, in order and intact. Per connection: records sent and
echoed, bytes lost, corrupted and out-of-order records, the longest stall (the longest time without an echoed
record while records were due), whether the connection broke, and its progress over time (for the timeline plot).

resolve: a caching stub resolver (dnspython, honouring TTLs) asks for a name every interval and records when its
answer changes, which is what a client that caches by the TTL sees after a DNS update.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import zlib

import dns.resolver

# conn id, seq, payload length; then the payload, then the CRC-32 of everything before it.
HEADER = struct.Struct("!IIH")
CRC = struct.Struct("!I")
CRC_SIZE = 4
RECORD_SIZE = 256
PAYLOAD = RECORD_SIZE - HEADER.size - CRC_SIZE
PROGRESS_EVERY_S = 0.05
# A broken connection must say so rather than hang: TCP gives up after this long without an acknowledgement.
USER_TIMEOUT_MS = 60000


def record(conn_id, seq):
    payload = bytes((conn_id * 131 + seq * 7 + i) & 0xff for i in range(PAYLOAD))
    body = HEADER.pack(conn_id, seq, PAYLOAD) + payload
    return body + CRC.pack(zlib.crc32(body))


def resolve_once(resolver, name):
    try:
        return sorted(rr.address for rr in resolver.resolve(name, "A"))
    except Exception as error:  # pylint: disable=broad-except
        return ["error: %s" % type(error).__name__]


def target_address(name, server):
    """``name`` resolved through ``server`` (a literal address is itself)."""
    try:
        socket.inet_aton(name)
        return name
    except OSError:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [server]
        return resolve_once(resolver, name)[0]


class Stream:
    """One connection: a sender thread paced at ``rate`` records/s, a receiver thread checking the echo."""

    def __init__(self, conn_id, address, port, rate, stop):
        self.conn_id, self.address, self.port, self.rate = conn_id, address, port, rate
        self.stop = stop
        self.sent = self.echoed = self.corrupted = self.reordered = 0
        self.error = None
        self.sending = True
        self.connect_s = None
        self.connected_at = None
        self.expected = 0
        self.receive_times = []
        self.progress = []
        self.sock = None

    def connect(self, timeout):
        began = time.time()
        self.sock = socket.create_connection((self.address, self.port), timeout=timeout)
        self.connected_at = time.time()
        self.connect_s = self.connected_at - began
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18), USER_TIMEOUT_MS)

    def send_loop(self):
        begin = time.monotonic()
        try:
            while not self.stop.is_set():
                due = begin + self.sent / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                    continue
                self.sock.sendall(record(self.conn_id, self.sent))
                self.sent += 1
        except OSError as error:
            self.error = self.error or "send: %s" % error
        finally:
            self.sending = False

    def receive_loop(self, drain_until):
        buffer = b""
        last_progress = 0.0
        while True:
            # Done once the sender has stopped and every record it sent is back (or the drain time is over).
            if not self.sending and (self.echoed >= self.sent or time.time() > drain_until[0]):
                return
            # The socket stays blocking for the sender (a timeout on it would be the sender's too).
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            try:
                chunk = self.sock.recv(65536)
            except OSError as error:
                self.error = self.error or "receive: %s" % error
                return
            if not chunk:
                self.error = self.error or "closed by the guest"
                return
            buffer += chunk
            now = time.time()
            while len(buffer) >= RECORD_SIZE:
                item, buffer = buffer[:RECORD_SIZE], buffer[RECORD_SIZE:]
                body, (crc,) = item[:-CRC_SIZE], CRC.unpack(item[-CRC_SIZE:])
                conn_id, seq, _length = HEADER.unpack(body[:HEADER.size])
                if zlib.crc32(body) != crc or conn_id != self.conn_id or item != record(conn_id, seq):
                    self.corrupted += 1
                elif seq != self.expected:
                    self.reordered += 1
                self.expected = seq + 1
                self.echoed += 1
                self.receive_times.append(now)
            if now - last_progress >= PROGRESS_EVERY_S:
                self.progress.append((round(now, 3), self.echoed))
                last_progress = now

    def summary(self, ended):
        times = [self.connected_at] + self.receive_times
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        # A connection that broke, or never got its last records back, stalled from its last echo to the end.
        if self.error or self.echoed < self.sent:
            gaps.append(ended - times[-1])
        return {
            "conn_id": self.conn_id,
            "address": self.address,
            "connect_s": self.connect_s,
            "sent": self.sent,
            "echoed": self.echoed,
            "bytes_sent": self.sent * RECORD_SIZE,
            "bytes_lost": (self.sent - self.echoed) * RECORD_SIZE,
            "corrupted": self.corrupted,
            "reordered": self.reordered,
            "lost": self.error is not None,
            "error": self.error,
            "longest_stall_s": round(max(gaps), 3) if gaps else None,
            "progress": self.progress,
        }


def run_streams(name, server, port, count, rate, seconds, until_file, drain_s, connect_timeout):
    address = target_address(name, server)
    stop = threading.Event()
    started = time.time()
    streams = [Stream(conn_id, address, port, rate, stop) for conn_id in range(count)]
    failed = []
    for stream in streams:
        try:
            stream.connect(connect_timeout)
        except OSError as error:
            failed.append({"conn_id": stream.conn_id, "error": "connect: %s" % error})
    live = [stream for stream in streams if stream.sock is not None]
    drain_until = [float("inf")]
    threads = []
    for stream in live:
        threads.append(threading.Thread(target=stream.send_loop, daemon=True))
        threads.append(threading.Thread(target=stream.receive_loop, args=(drain_until,), daemon=True))
    for thread in threads:
        thread.start()
    deadline = time.time() + seconds if seconds else None
    while not (deadline and time.time() >= deadline) and not (until_file and os.path.exists(until_file)):
        time.sleep(0.05)
    drain_until[0] = time.time() + drain_s
    stop.set()
    deadline = time.time() + drain_s + 5
    for thread in threads:
        thread.join(max(deadline - time.time(), 0))
    ended = time.time()
    for stream in live:
        # Unblocks a sender stuck on a dead connection, so that its thread ends with the process.
        if stream.sending:
            with contextlib.suppress(OSError):
                stream.sock.shutdown(socket.SHUT_RDWR)
        stream.sock.close()
    return {"name": name, "address": address, "port": port, "rate": rate, "record_size": RECORD_SIZE,
            "started": started, "ended": ended, "connect_failures": failed,
            "connections": [stream.summary(ended) for stream in live]}


def run_resolve(name, server, interval, seconds, until_file):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server]
    resolver.cache = dns.resolver.Cache()
    changes = []
    deadline = time.time() + seconds if seconds else None
    while not (deadline and time.time() >= deadline) and not (until_file and os.path.exists(until_file)):
        answer = resolve_once(resolver, name)
        if not changes or changes[-1]["answer"] != answer:
            changes.append({"t": time.time(), "answer": answer})
        time.sleep(interval)
    return {"name": name, "server": server, "interval": interval, "changes": changes}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.streams")
    parser.add_argument("action", choices=("tcp", "resolve"))
    parser.add_argument("name", help="the guest's DNS name or address")
    parser.add_argument("--server", help="DNS server to resolve the name through")
    parser.add_argument("--port", type=int, default=7)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="records per second per connection")
    parser.add_argument("--seconds", type=float, default=0.0, help="how long; 0: until --until-file exists")
    parser.add_argument("--until-file", help="stop once this file exists")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait for the last echoes")
    parser.add_argument("--interval", type=float, default=0.1, help="resolve: seconds between lookups")
    parser.add_argument("--connect-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.action == "tcp":
        result = run_streams(args.name, args.server, args.port, args.count, args.rate, args.seconds,
                             args.until_file, args.drain, args.connect_timeout)
    else:
        result = run_resolve(args.name, args.server, args.interval, args.seconds, args.until_file)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
