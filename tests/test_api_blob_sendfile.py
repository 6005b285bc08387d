"""Large blob bodies go out by sendfile on a thread (http/sendfile.py): the same bytes,
ranges, HEAD and keep-alive as the copying path, a client that leaves mid-body costs the
server nothing, and the access log counts the bytes."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import ocihelpers as oh
import requests
from processhelpers import eventually, threads_and_fds

from cargohold.http.blobresponse import SENDFILE_MIN

SIZE = 3 * SENDFILE_MIN + 12345


def test_large_blob_bodies_ranges_and_keep_alive(make_registry: Callable[..., Any]) -> None:
    server = make_registry(env={"CARGOHOLD_ACCESS_LOG": "true", "CARGOHOLD_LOG_FORMAT": "json"})
    data = os.urandom(SIZE)
    digest = oh.push_blob(server.url, "big/app", data)
    path = f"/v2/big/app/blobs/{digest}"
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        for headers, status, body in (
                ({}, 200, data),
                ({"Range": f"bytes={SENDFILE_MIN - 7}-"}, 206, data[SENDFILE_MIN - 7:]),
                ({"Range": "bytes=5-2000004"}, 206, data[5:2000005]),
                ({"Range": "bytes=-100"}, 206, data[-100:]),  # small: the copying path
                ({}, 200, data)):  # the same connection, still in step
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            got = answer.read()
            assert answer.status == status
            assert int(answer.getheader("Content-Length")) == len(body)
            assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
        conn.request("HEAD", path)
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read() == b""
        assert answer.getheader("Content-Length") == str(SIZE)
    finally:
        conn.close()
    server.stop()  # flush the logs
    sent = [json.loads(line)["bytes_out"] for line in server.log().splitlines()
            if line.startswith("{") and '"cargohold.access"' in line
            and '"GET"' in line and '"/v2/{name}/blobs/{digest}"' in line]
    for body in (SIZE, SIZE - (SENDFILE_MIN - 7), 2000000):  # each with its headers
        assert any(body < count < body + 1024 for count in sent), (body, sent)


def test_a_client_leaving_mid_body_costs_nothing(make_registry: Callable[..., Any]) -> None:
    server = make_registry()
    data = os.urandom(64 << 20)
    digest = oh.push_blob(server.url, "big/leaving", data)
    leave_midway(server, digest, data)  # sets up what stays (executor threads)
    time.sleep(1)
    baseline = threads_and_fds(server.proc.pid)
    for _ in range(4):
        leave_midway(server, digest, data)  # 20 sendfile threads
    # The sendfile threads end and close their two descriptors each. (The executors and the
    # connection pool may still grow, lazily: a few threads, one more SQLite connection with
    # its WAL and shared-memory files.)
    assert eventually(lambda: threads_and_fds(server.proc.pid)[0] <= baseline[0] + 4
                      and threads_and_fds(server.proc.pid)[1] <= baseline[1] + 3), \
        (baseline, threads_and_fds(server.proc.pid))


def leave_midway(server: Any, digest: str, data: bytes) -> tuple[int, int]:
    """Five clients that reset their connection with most of the body unsent, then a whole
    download on a new one."""
    parts = urlsplit(server.url)
    for _ in range(5):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /v2/big/leaving/blobs/{digest} HTTP/1.1\r\n"
                     f"Host: {parts.netloc}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, with most of the body unsent
    whole = requests.get(f"{server.url}/v2/big/leaving/blobs/{digest}", timeout=60)
    assert whole.status_code == 200 and whole.content == data
    return threads_and_fds(server.proc.pid)
