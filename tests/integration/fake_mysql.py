"""A small MySQL server on loopback that speaks just enough of the protocol for pymysql
(handshake, OK packets, one LOCAL INFILE request) to act as a rogue database: it answers a
chosen statement with a LOCAL INFILE request (0xFB) for a file of its choosing and records
every byte the client sends back."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

CAPABILITIES = (
    0x00000001  # LONG_PASSWORD
    | 0x00000008  # CONNECT_WITH_DB
    | 0x00000080  # LOCAL_FILES
    | 0x00000200  # PROTOCOL_41
    | 0x00002000  # TRANSACTIONS
    | 0x00008000  # SECURE_CONNECTION
    | 0x00020000  # MULTI_RESULTS
    | 0x00080000  # PLUGIN_AUTH
)  # no SSL: a server (or a man in the middle) that does not offer TLS
OK = b"\x00\x00\x00\x02\x00\x00\x00"  # no rows, no insert id, autocommit status, no warnings


@dataclass
class Transfer:
    """One LOCAL INFILE request and what the client sent for it."""

    statement: str
    requested: str
    packets: list[bytes] = field(default_factory=list)  # the data packets before the empty one

    @property
    def sent(self) -> bytes:
        return b"".join(self.packets)


class FakeMySqlServer:
    """`request_for(statement)` names the file to ask for in answer to a statement, or None."""

    def __init__(self, request_for: Callable[[str], str | None]) -> None:
        self.request_for = request_for
        self.statements: list[str] = []
        self.transfers: list[Transfer] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="fake-mysql", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeMySqlServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- protocol
    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with client:
                try:
                    self._session(client)
                except (ConnectionError, EOFError):
                    pass

    def _session(self, client: socket.socket) -> None:
        salt = b"abcdefgh" + b"ijklmnopqrst"
        handshake = (
            b"\x0a"
            + b"5.7.99-fake\x00"
            + struct.pack("<I", 7)
            + salt[:8]
            + b"\x00"
            + struct.pack("<H", CAPABILITIES & 0xFFFF)
            + b"\x2d"
            + struct.pack("<H", 2)
            + struct.pack("<H", CAPABILITIES >> 16)
            + bytes([21])
            + b"\x00" * 10
            + salt[8:]
            + b"\x00"
            + b"mysql_native_password\x00"
        )
        _send(client, 0, handshake)
        seq, _response = _receive(client)
        _send(client, seq + 1, OK)  # any login will do
        while True:
            seq, payload = _receive(client)
            if payload[:1] == b"\x01":  # COM_QUIT
                return
            statement = payload[1:].decode("utf-8", "replace")
            self.statements.append(statement)
            requested = self.request_for(statement) if payload[:1] == b"\x03" else None
            if requested is None:
                _send(client, seq + 1, OK)
                continue
            transfer = Transfer(statement, requested)
            self.transfers.append(transfer)
            _send(client, seq + 1, b"\xfb" + requested.encode())
            while True:
                seq, data = _receive(client)
                if not data:
                    break
                transfer.packets.append(data)
            _send(client, seq + 1, OK)


def _send(client: socket.socket, seq: int, payload: bytes) -> None:
    client.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload)


def _receive(client: socket.socket) -> tuple[int, bytes]:
    header = _exactly(client, 4)
    length = int.from_bytes(header[:3], "little")
    return header[3], _exactly(client, length)


def _exactly(client: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = client.recv(n - len(data))
        if not part:
            raise EOFError("client closed the connection")
        data += part
    return data
