"""The kernel relay of proxied blob bodies (cargohold/http/splice.py), on real loopback TCP
sockets: bytes arrive whole and in order, a store socket that fails or falls silent is reported
with what it gave, and a client that closes or is cancelled stops the relay."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from cargohold.http.sendfile import ClientGone
from cargohold.http.splice import SourceFailed, SpliceRelay

MiB = 1024 * 1024


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    return near, far


def nonblocking_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the near end, non-blocking as a server's sockets are; the far end), closed after."""
    near, far = tcp_pair()
    near.setblocking(False)
    yield near, far
    near.close()
    far.close()


@pytest.fixture
def client() -> Iterator[tuple[socket.socket, socket.socket]]:
    """The client's connection: the relay writes to its near end."""
    yield from nonblocking_pair()


@pytest.fixture
def store() -> Iterator[tuple[socket.socket, socket.socket]]:
    """The store's connection: the relay reads from its near end."""
    yield from nonblocking_pair()


def send_in_background(sock: socket.socket, data: bytes, close: bool = True) -> threading.Thread:
    def send() -> None:
        try:
            sock.sendall(data)
            if close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the test closed the socket first (it had what it needed)
            return

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def receive_in_background(sock: socket.socket, into: bytearray, limit: int) -> threading.Thread:
    def receive() -> None:
        while len(into) < limit and (chunk := sock.recv(MiB)):
            into.extend(chunk)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return thread


def relay_for(client: tuple[socket.socket, socket.socket], timeout: float = 30.0,
              cancelled: threading.Event | None = None) -> SpliceRelay:
    return SpliceRelay(os.dup(client[0].fileno()), cancelled or threading.Event(), timeout)


def test_bodies_arrive_whole_and_in_order(client: tuple[socket.socket, socket.socket]) -> None:
    first, second = os.urandom(9 * MiB + 7), os.urandom(3 * MiB + 1)
    received = bytearray()
    reader = receive_in_background(client[1], received, 5 + len(first) + len(second))
    relay = relay_for(client)
    try:
        relay.send_bytes(b"head:")
        for body in (first, second):
            store, remote = tcp_pair()
            store.setblocking(False)
            send_in_background(remote, body)
            relay.pump(store.fileno(), len(body))
            store.close()
            remote.close()
        assert relay.in_pipe == 0
    finally:
        relay.close()
    reader.join(30)
    assert bytes(received) == b"head:" + first + second


def test_a_store_body_that_ends_early_reports_what_it_gave(
        client: tuple[socket.socket, socket.socket]) -> None:
    """The relay is told how far the store got, so the caller can resume from there."""
    data = os.urandom(4 * MiB)
    received = bytearray()
    reader = receive_in_background(client[1], received, len(data))
    relay = relay_for(client)
    try:
        store, remote = tcp_pair()
        store.setblocking(False)
        send_in_background(remote, data[:MiB + 3]).join(30)  # then end of stream
        with pytest.raises(SourceFailed, match="short") as failed:
            relay.pump(store.fileno(), len(data))
        assert failed.value.taken == MiB + 3
        resumed, remote2 = tcp_pair()
        resumed.setblocking(False)
        send_in_background(remote2, data[MiB + 3:])
        relay.pump(resumed.fileno(), len(data) - MiB - 3)
        for sock in (store, remote, resumed, remote2):
            sock.close()
    finally:
        relay.close()
    reader.join(30)
    assert bytes(received) == data


def test_a_silent_store_fails_after_its_timeout(
        client: tuple[socket.socket, socket.socket],
        store: tuple[socket.socket, socket.socket]) -> None:
    store[1].sendall(b"x" * 1000)  # then nothing, connection open
    relay = relay_for(client, timeout=1.0)
    try:
        with pytest.raises(SourceFailed, match="nothing") as failed:
            relay.pump(store[0].fileno(), 10 * MiB)
        assert failed.value.taken == 1000
    finally:
        relay.close()


def test_a_cancelled_relay_to_a_client_that_reads_nothing_stops(
        client: tuple[socket.socket, socket.socket],
        store: tuple[socket.socket, socket.socket]) -> None:
    send_in_background(store[1], os.urandom(64 * MiB), close=False)
    cancelled = threading.Event()
    relay = relay_for(client, cancelled=cancelled)
    threading.Timer(1.0, cancelled.set).start()
    try:
        with pytest.raises(ClientGone):
            relay.pump(store[0].fileno(), 64 * MiB)
    finally:
        relay.close()


def test_a_client_that_closes_is_gone(client: tuple[socket.socket, socket.socket],
                                      store: tuple[socket.socket, socket.socket]) -> None:
    send_in_background(store[1], os.urandom(32 * MiB), close=False)
    client[1].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    client[1].close()  # a reset: the relay's next write fails at once
    relay = relay_for(client)
    try:
        with pytest.raises(ClientGone):
            relay.pump(store[0].fileno(), 32 * MiB)
    finally:
        relay.close()
