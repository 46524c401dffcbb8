#!/usr/bin/env python
"""Probe (not used by coord): what a lean blocking HTTP/2 unary call would cost.

Measures sequential ``KV/Range`` calls three ways on one etcd, in one run:

* ``raw``: a blocking socket speaking just enough HTTP/2 for unary gRPC (hand-built frames,
  hpack for the header blocks, PING/SETTINGS acks riding along with the next request). It
  skips what a real client must do (flow control for large sends, GOAWAY, RST_STREAM,
  CONTINUATION, padding, TLS, deadlines, retries): it is an upper bound on the gain, not an
  implementation;
* ``coord``: ``coord.Client.get`` (grpclib + h2 under the direct lane);
* ``etcd3``: python-etcd3 (grpcio), when its venv exists.

Usage: ``python scripts/probe_raw_h2.py [--endpoint HOST:PORT] [--n 5000]`` (without
``--endpoint`` a throw-away etcd is started, as in bench_client.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import hpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_client import start_etcd

from coord import _wire

ETCD3_PYTHON = "/tmp/benchvenv/bin/python"


def _frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big")
    return head + payload


class RawUnary:
    """One HTTP/2 connection, one unary call at a time (see the module docstring)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.authority = f"{host}:{port}"
        self.enc, self.dec = hpack.Encoder(), hpack.Decoder()
        self.buf = bytearray()
        self.next_id = 1
        self.outbox: list[bytes] = []
        self.unacked = 0
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                          + _frame(4, 0, 0, struct.pack(">HI", 4, 1 << 22))
                          + _frame(8, 0, 0, struct.pack(">I", 1 << 30)))

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        buf = self.buf
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        n = int.from_bytes(buf[:3], "big")
        ftype, flags = buf[3], buf[4]
        sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        payload = bytes(buf[9:9 + n])
        del buf[:9 + n]
        return ftype, flags, sid, payload

    def call(self, path: str, msg: bytes) -> bytes:
        block = self.enc.encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                 (":authority", self.authority), ("te", "trailers"),
                                 ("content-type", "application/grpc")])
        sid, self.next_id = self.next_id, self.next_id + 2
        data = b"\x00" + len(msg).to_bytes(4, "big") + msg
        out = b"".join(self.outbox)
        self.outbox.clear()
        self.sock.sendall(out + _frame(1, 4, sid, block) + _frame(0, 1, sid, data))
        body, status = bytearray(), None
        while True:
            ftype, flags, fsid, payload = self._read_frame()
            if ftype == 0 and fsid == sid:
                body += payload
                self.unacked += len(payload)
            elif ftype == 1 and fsid == sid:
                status = dict(self.dec.decode(payload)).get("grpc-status", status)
                if flags & 1:
                    break
            elif ftype == 6 and not flags & 1:
                self.outbox.append(_frame(6, 1, 0, payload))
            elif ftype == 4 and not flags & 1:
                self.outbox.append(_frame(4, 1, 0, b""))
        if self.unacked > 1 << 20:
            self.outbox.append(_frame(8, 0, 0, struct.pack(">I", self.unacked)))
            self.unacked = 0
        if status != "0":
            raise RuntimeError(f"grpc-status {status}")
        return bytes(body[5:])


def _timed(fn: object, n: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n * 1e6


ETCD3_CODE = """
import sys, time, etcd3
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = etcd3.client(host, port)
c.put("/probe/k", "v" * 100)
c.get("/probe/k")
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(n):
    c.get("/probe/k")
print(n / (time.perf_counter() - t0), (time.process_time() - c0) / n * 1e6)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--endpoint")
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="coord-probe-")
    etcd = None
    endpoint = args.endpoint
    if endpoint is None:
        etcd, endpoint = start_etcd(tmp)
    try:
        host, _, port = endpoint.rpartition(":")
        from coord import Client
        with Client(endpoint) as client:
            client.put("/probe/k", "v" * 100)
            client.get("/probe/k")
            results = {"coord": _timed(lambda: client.get("/probe/k"), args.n)}
        raw = RawUnary(host, int(port))
        req = _wire.encode_range(b"/probe/k")
        raw.call("/etcdserverpb.KV/Range", req)
        results["raw"] = _timed(
            lambda: _wire.decode_range(raw.call("/etcdserverpb.KV/Range", req)), args.n)
        if os.path.exists(ETCD3_PYTHON):
            out = subprocess.run([ETCD3_PYTHON, "-c", ETCD3_CODE, host, port, str(args.n)],
                                 capture_output=True, text=True, check=True).stdout.split()
            results["etcd3"] = (float(out[0]), float(out[1]))
    finally:
        if etcd is not None:
            etcd.kill()
            etcd.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    for name, (rate, cpu) in results.items():
        print(f"{name:6s} sequential get: {rate:7,.0f} calls/s, client CPU {cpu:4.0f} us/call")


if __name__ == "__main__":
    main()
