"""In-process tests of the one-port listener (server/http/mux.py) with a toy grpclib service."""

from __future__ import annotations

import asyncio
import json

from grpclib.client import Channel
from grpclib.server import Server
from support import close_channel

from coord import __version__
from coord._pb import etcdserverpb as pb
from coord.server.http import ClientListener
from coord.server.listen import bind_url


class _Maintenance(pb.MaintenanceBase):
    async def status(self, message: pb.StatusRequest) -> pb.StatusResponse:
        return pb.StatusResponse(version="3.5.0", leader=7)


async def _http(port: int, pieces: list[bytes]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in pieces:  # a request split at awkward places: the sniffer must buffer
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.01)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_grpc_and_http_on_one_port_with_split_first_bytes() -> None:
    async def main() -> None:
        listener = ClientListener(Server([_Maintenance()]))
        (sock,) = bind_url("http://127.0.0.1:0", "client requests")
        await listener.start(sock)
        (port,) = listener.ports
        try:
            channel = Channel("127.0.0.1", port)
            try:
                resp = await pb.MaintenanceStub(channel).status(pb.StatusRequest())
                assert resp.leader == 7
            finally:
                await close_channel(channel)
            request = (
                b"POST /v3/maintenance/status HTTP/1.1\r\nHost: x\r\n"
                b"Connection: close\r\nContent-Length: 2\r\n\r\n{}"
            )
            # "P" and "PR" are also a prefix of the HTTP/2 preface "PRI * HTTP/2.0..."
            raw = await _http(port, [request[:1], request[1:2], request[2:9], request[9:]])
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert json.loads(body) == {"version": "3.5.0", "leader": "7"}
            raw = await _http(
                port, [b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
            )
            assert json.loads(raw.partition(b"\r\n\r\n")[2]) == {
                "etcdserver": "3.5.0",
                "etcdcluster": "3.5.0",
                "coord": __version__,
            }
        finally:
            listener.close()
            await listener.wait_closed()
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("listener still accepting after close()")

    asyncio.run(main())


def test_unimplemented_route_is_501_and_unknown_path_404() -> None:
    async def main() -> None:
        listener = ClientListener(Server([_Maintenance()]))
        (sock,) = bind_url("http://127.0.0.1:0", "client requests")
        await listener.start(sock)
        (port,) = listener.ports
        try:
            raw = await _http(
                port,
                [
                    b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\nContent-Length: 2\r\n\r\n{}"
                ],
            )
            assert raw.startswith(b"HTTP/1.1 501 ")
            assert json.loads(raw.partition(b"\r\n\r\n")[2])["code"] == 12
            raw = await _http(port, [b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
            assert raw.startswith(b"HTTP/1.1 404 ")
        finally:
            listener.close()
            await listener.wait_closed()

    asyncio.run(main())
