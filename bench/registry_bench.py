#!/usr/bin/env python3
"""Throughput / latency / memory benchmark for any OCI distribution registry.

    python bench/registry_bench.py --url http://127.0.0.1:5000 [--pid PID] [--only ROWS] [--quick]
                                   [--user U:P | --aws-credentials FILE]

Prints one JSON object on stdout; progress goes to stderr. Rows (names or numbers for --only):

    1 push_monolithic   POST + streamed PUT ?digest= of a big blob, MB/s
    2 push_chunked      POST + PATCH (8 MiB, Content-Range) ... + PUT ?digest=, MB/s
    3 pull              GET of the big blob, MB/s
    4 pull_concurrent   8 simultaneous GETs of the big blob, aggregate MB/s
    5 push_small        many distinct 1-4 KiB blobs over a few connections, blobs/s
    6 manifest_get      manifest GET by tag at 64 connections (wrk, else aiohttp), requests/s
    7 tags_list         one manifest tagged N times; full and paginated (n=1000) tag listing, ms
    8 memory            server RSS (process tree) while a 1 GiB blob is pushed then pulled, MiB
    9 manifest_get_bearer  row 6 with a Bearer token from the registry's token endpoint, req/s
   10 describe_images   ECR DescribeImages over a repository of 10,000 images (boto3), ms
   11 pull_load         manifest and small blob GETs in turn at 200 connections (wrk, else aiohttp)

With --pid, each row also reports the server's CPU time (user + system, its whole process tree).

Before each row, and between a row's pushes and its timed pulls (rows 3, 4 and 8), the machine's
dirty pages are flushed (`sync`, untimed): no timed phase pays for the writeback of bytes that
an earlier phase, or the previous registry's run, left in the page cache (a registry that does
not fsync, or the S3 store behind it, leaves up to gigabytes there).

Rows 9 and 10 need credentials (--user, or --aws-credentials: an AWS shared-credentials file whose
key signs ECR API requests and, as Basic auth, every /v2 request). Row 9 applies to registries
with Docker token authentication, row 10 to registries that serve the ECR API (POST / with
SigV4); elsewhere they report "n/a".

MB is 10**6 bytes. Blob content is pseudo-random and generated in pieces from one shared 8 MiB
buffer: no blob is ever held whole in memory, and every blob is distinct (its digest is computed
in a first, untimed pass). Only the standard library is used, plus aiohttp for the row 6 fallback
and row 11, and boto3 for row 10.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import configparser
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000
BLOCK = 8 * MiB  # size of the shared random buffer; blobs are made of (tagged) copies of it
TAG = 32  # each BLOCK of a blob starts with sha256(nonce || block index): blobs never repeat
HTTP_TIMEOUT = 300.0  # seconds, per socket operation
READ_BUF = 1 * MiB

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

ROWS = [
    "push_monolithic",
    "push_chunked",
    "pull",
    "pull_concurrent",
    "push_small",
    "manifest_get",
    "tags_list",
    "memory",
    "manifest_get_bearer",
    "describe_images",
    "pull_load",
]


@dataclass(frozen=True)
class Sizes:
    big_blob: int
    chunk: int
    push_reps: int
    pull_reps: int
    concurrent_pulls: int
    concurrent_reps: int
    small_blobs: int
    small_min: int
    small_max: int
    small_concurrency: int
    manifest_connections: int
    manifest_seconds: int
    tags: int
    tag_page: int
    tag_concurrency: int
    list_reps: int
    memory_blob: int
    ecr_images: int
    ecr_page: int
    ecr_push_concurrency: int
    ecr_reps: int
    pull_load_connections: int = 200
    pull_load_seconds: int = 10
    pull_load_blobs: int = 20
    small_reps: int = 3  # row 5's samples, each of small_blobs fresh blobs


FULL = Sizes(
    big_blob=256 * MiB, chunk=8 * MiB, push_reps=3, pull_reps=5, concurrent_pulls=8,
    concurrent_reps=3, small_blobs=1000, small_min=1 * KiB, small_max=4 * KiB,
    small_concurrency=4, manifest_connections=64, manifest_seconds=10, tags=5000,
    tag_page=1000, tag_concurrency=4, list_reps=5, memory_blob=1 * GiB,
    ecr_images=10_000, ecr_page=1000, ecr_push_concurrency=8, ecr_reps=3,
)
QUICK = Sizes(
    big_blob=16 * MiB, chunk=8 * MiB, push_reps=1, pull_reps=2, concurrent_pulls=8,
    concurrent_reps=1, small_blobs=100, small_min=1 * KiB, small_max=4 * KiB,
    small_concurrency=4, manifest_connections=64, manifest_seconds=2, tags=200,
    tag_page=50, tag_concurrency=4, list_reps=2, memory_blob=64 * MiB,
    ecr_images=500, ecr_page=100, ecr_push_concurrency=4, ecr_reps=2,
    pull_load_seconds=2, small_reps=1,
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- blob content


class BlobSource:
    """`size` deterministic pseudo-random bytes identified by `nonce`, produced piecewise."""

    _base: bytes | None = None
    _base_lock = threading.Lock()

    def __init__(self, size: int, nonce: bytes | None = None) -> None:
        self.size = size
        self.nonce = nonce if nonce is not None else os.urandom(16)

    @classmethod
    def base(cls) -> memoryview:
        with cls._base_lock:
            if cls._base is None:
                cls._base = random.Random(0xC4260).randbytes(BLOCK)
            return memoryview(cls._base)

    def _tag(self, k: int) -> bytes:
        return hashlib.sha256(self.nonce + k.to_bytes(8, "big")).digest()

    def pieces(self, start: int = 0, length: int | None = None) -> Iterator[memoryview | bytes]:
        """Yield the bytes [start, start+length) as a few large pieces (no copies of the base)."""
        end = self.size if length is None else min(self.size, start + length)
        base = self.base()
        pos = start
        while pos < end:
            k, off = divmod(pos, BLOCK)
            stop = min(end, (k + 1) * BLOCK) - k * BLOCK  # offset within block, exclusive
            if off < TAG:
                cut = min(TAG, stop)
                yield self._tag(k)[off:cut]
                off = cut
            if off < stop:
                yield base[off:stop]
            pos = k * BLOCK + stop

    @cached_property
    def digest(self) -> str:
        h = hashlib.sha256()
        for piece in self.pieces():
            h.update(piece)
        return "sha256:" + h.hexdigest()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- minimal HTTP


Body = bytes | Callable[[], Iterable[memoryview | bytes]] | None


@dataclass
class Resp:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def with_query(url: str, **params: str | int) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


class Conn:
    """One keep-alive connection to one host (http.client; no per-request overhead beyond it)."""

    def __init__(self, base_url: str, timeout: float = HTTP_TIMEOUT,
                 auth: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BenchError(f"unsupported URL {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self.auth = auth
        self._conn: http.client.HTTPConnection | None = None
        self._used = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout,
                    context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            self._used = False
        return self._conn

    def url(self, target: str) -> str:
        return urljoin(self.base_url + "/", target)

    def _path(self, target: str) -> str:
        full = urlsplit(self.url(target))
        if full.netloc != self.netloc or full.scheme != self.scheme:
            raise BenchError(f"registry sent us to another host: {target}")
        return (full.path or "/") + (f"?{full.query}" if full.query else "")

    def open(self, method: str, target: str, headers: dict[str, str] | None = None,
             body: Body = None, body_len: int | None = None) -> http.client.HTTPResponse:
        """Send a request and return the response with its body still unread."""
        path = self._path(target)
        hdrs = dict(headers or {})
        if self.auth:
            hdrs.setdefault("Authorization", self.auth)
        if body is None:
            length = 0
        elif isinstance(body, bytes):
            length = len(body)
        else:
            if body_len is None:
                raise BenchError("streamed body needs body_len")
            length = body_len
        for attempt in range(2):
            conn = self._connection()
            reused = self._used
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                if body is not None or method in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(length))
                conn.endheaders()
                if isinstance(body, bytes):
                    if body:
                        conn.send(body)
                elif body is not None:
                    for piece in body():
                        conn.send(piece)
                resp = conn.getresponse()
                self._used = True
                return resp
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady) as exc:
                self.close()
                if attempt == 0 and reused:
                    continue  # stale keep-alive connection: retry once on a fresh one
                raise BenchError(f"{method} {path}: {exc!r}") from exc
        raise AssertionError("unreachable")

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body: Body = None, body_len: int | None = None) -> Resp:
        resp = self.open(method, target, headers, body, body_len)
        data = resp.read()
        if resp.will_close:
            self.close()
        return Resp(resp.status, resp.headers, data)

    def download(self, target: str, headers: dict[str, str] | None = None,
                 verify: bool = False, max_redirects: int = 3) -> tuple[int, str | None]:
        """GET target and stream the body into a reused buffer. Returns (bytes, sha256|None)."""
        conn: Conn = self
        for _ in range(max_redirects + 1):
            resp = conn.open("GET", target, headers)
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                resp.read()
                if not location:
                    raise BenchError("redirect without Location")
                target = conn.url(location)
                if urlsplit(target).netloc != conn.netloc:
                    conn = Conn(target, conn.timeout)  # e.g. a storage backend
                    headers = None
                continue
            if resp.status != 200:
                body = resp.read()
                raise BenchError(f"GET {target}: HTTP {resp.status} {body[:200]!r}")
            buf = bytearray(READ_BUF)
            view = memoryview(buf)
            h = hashlib.sha256() if verify else None
            total = 0
            while True:
                n = resp.readinto(view)
                if not n:
                    break
                if h is not None:
                    h.update(view[:n])
                total += n
            if resp.will_close:
                conn.close()
            return total, ("sha256:" + h.hexdigest()) if h is not None else None
        raise BenchError("too many redirects")


def expect(resp: Resp, statuses: tuple[int, ...], what: str) -> Resp:
    if resp.status not in statuses:
        raise BenchError(f"{what}: HTTP {resp.status} (wanted {statuses}): {resp.body[:300]!r}")
    return resp


# --------------------------------------------------------------------------- registry ops


class Registry:
    def __init__(self, url: str, auth: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.auth = auth

    def conn(self) -> Conn:
        return Conn(self.url, auth=self.auth)

    def start_upload(self, c: Conn, repo: str) -> str:
        r = expect(c.request("POST", f"/v2/{repo}/blobs/uploads/"), (202,), "start upload")
        loc = r.header("Location")
        if not loc:
            raise BenchError("upload POST without Location")
        return c.url(loc)

    def push_monolithic(self, c: Conn, repo: str, src: BlobSource) -> float:
        """POST + PUT ?digest= with the body streamed. Returns elapsed seconds."""
        digest = src.digest  # first pass, untimed
        t0 = time.perf_counter()
        loc = self.start_upload(c, repo)
        r = c.request("PUT", with_query(loc, digest=digest),
                      {"Content-Type": "application/octet-stream"},
                      body=src.pieces, body_len=src.size)
        elapsed = time.perf_counter() - t0
        expect(r, (201,), "monolithic PUT")
        return elapsed

    def push_chunked(self, c: Conn, repo: str, src: BlobSource, chunk: int) -> float:
        digest = src.digest
        t0 = time.perf_counter()
        loc = self.start_upload(c, repo)
        max_chunks = src.size // chunk + 2
        pos = 0
        for _ in range(max_chunks):
            if pos >= src.size:
                break
            n = min(chunk, src.size - pos)
            start = pos
            r = c.request("PATCH", loc, {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + n - 1}",
            }, body=lambda s=start, m=n: src.pieces(s, m), body_len=n)
            expect(r, (202,), f"PATCH {start}-{start + n - 1}")
            loc = c.url(r.header("Location") or loc)
            pos += n
        r = c.request("PUT", with_query(loc, digest=digest))
        elapsed = time.perf_counter() - t0
        expect(r, (201,), "final chunked PUT")
        return elapsed

    def push_bytes(self, c: Conn, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        loc = self.start_upload(c, repo)
        expect(c.request("PUT", with_query(loc, digest=digest),
                         {"Content-Type": "application/octet-stream"}, body=data),
               (201,), "blob PUT")
        return digest

    def check_blob(self, c: Conn, repo: str, digest: str, size: int) -> None:
        r = expect(c.request("HEAD", f"/v2/{repo}/blobs/{digest}"), (200,), "HEAD blob")
        length = r.header("Content-Length")
        if length is not None and int(length) != size:
            raise BenchError(f"HEAD blob: Content-Length {length}, expected {size}")

    def push_image(self, c: Conn, repo: str, tag: str) -> tuple[bytes, str]:
        """Push a tiny OCI image (config + one layer + manifest). Returns (manifest, digest)."""
        nonce = uuid.uuid4().hex
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": {"bench.nonce": nonce}},
        }, separators=(",", ":")).encode()
        layer = os.urandom(2048)
        cfg_digest = self.push_bytes(c, repo, config)
        layer_digest = self.push_bytes(c, repo, layer)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
            "annotations": {"org.opencontainers.image.description": f"bench {nonce}"},
        }, indent=2).encode()
        self.put_manifest(c, repo, tag, manifest)
        return manifest, sha256_digest(manifest)

    def put_manifest(self, c: Conn, repo: str, ref: str, manifest: bytes) -> None:
        expect(c.request("PUT", f"/v2/{repo}/manifests/{ref}",
                         {"Content-Type": OCI_MANIFEST}, body=manifest),
               (201,), f"PUT manifest {ref}")


def settle_writes() -> None:
    """Flush the machine's dirty pages (untimed; see the module docstring)."""
    t0 = time.perf_counter()
    os.sync()
    log(f"sync: {time.perf_counter() - t0:.2f} s")


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / MB


def rnd(x: float, nd: int = 1) -> float:
    return round(x, nd)


# --------------------------------------------------------------------------- memory sampler


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def _children_by_scan(pid: int) -> list[int]:
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry))
    return out


def process_tree(pid: int) -> list[int]:
    use_children_file = os.path.exists(f"/proc/{pid}/task/{pid}/children")
    seen: list[int] = []
    todo = [pid]
    while todo and len(seen) < 1000:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p) if use_children_file else _children_by_scan(p))
    return seen


def _status_kib(pid: int, field_name: str, path: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    """utime + stime of one process (clock ticks), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process tree: the server's share of a row,
    less sensitive to the other load on the machine than its throughput. Workers are long-lived,
    so a before/after difference covers them."""
    return sum(_cpu_ticks(p) for p in process_tree(pid)) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Samples RSS (and PSS) summed over a process tree every `interval` seconds."""

    MAX_SAMPLES = 200_000

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.phase = "idle"
        self.peak_rss: dict[str, int] = {}
        self.peak_pss: dict[str, int] = {}
        self.max_procs = 0
        self.samples = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.has_pss = os.path.exists(f"/proc/{pid}/smaps_rollup")

    def sample(self) -> tuple[int, int, int]:
        pids = process_tree(self.pid)
        rss = sum(_status_kib(p, "VmRSS:") for p in pids)
        pss = sum(_status_kib(p, "Pss:", "smaps_rollup") for p in pids) if self.has_pss else 0
        return rss, pss, len(pids)

    def record(self, phase: str | None = None) -> None:
        with self._lock:
            rss, pss, n = self.sample()
            self.samples += 1
            ph = phase or self.phase
            self.peak_rss[ph] = max(self.peak_rss.get(ph, 0), rss)
            self.peak_pss[ph] = max(self.peak_pss.get(ph, 0), pss)
            self.max_procs = max(self.max_procs, n)

    def mark(self, phase: str) -> None:
        """End the current phase with one more sample (short phases get >= 2), start `phase`."""
        self.record()
        self.phase = phase
        self.record()

    def run(self) -> None:
        while not self._halt.is_set() and self.samples < self.MAX_SAMPLES:
            self.record()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------- the rows


class Bench:
    def __init__(self, url: str, sizes: Sizes, pid: int | None, auth: str | None,
                 load_tool: str = "auto", aws: tuple[str, str] | None = None,
                 region: str = "us-east-1") -> None:
        self.reg = Registry(url, auth)
        self.aws = aws
        self.region = region
        self.load_tool = load_tool
        self.sizes = sizes
        self.pid = pid
        self.run_id = uuid.uuid4().hex[:10]
        self._pull_blob: tuple[str, BlobSource] | None = None

    def server_cpu(self) -> float | None:
        return tree_cpu_seconds(self.pid) if self.pid else None

    def cpu_per_op(self, before: float | None, ops: int) -> float | None:
        """Server CPU milliseconds per operation since `before` (None without --pid)."""
        if before is None or not ops:
            return None
        return rnd((tree_cpu_seconds(self.pid or 0) - before) * 1000 / ops, 3)

    def repo(self, row: str) -> str:
        return f"bench/r{self.run_id}/{row.replace('_', '-')}"

    # 1
    def push_monolithic(self) -> dict[str, Any]:
        s = self.sizes
        repo = self.repo("push_monolithic")
        c = self.reg.conn()
        times = []
        src = BlobSource(s.big_blob)
        for i in range(s.push_reps):
            src = BlobSource(s.big_blob)
            log(f"monolithic push {i + 1}/{s.push_reps} ({s.big_blob // MiB} MiB)")
            times.append(self.reg.push_monolithic(c, repo, src))
        self.reg.check_blob(c, repo, src.digest, src.size)
        self._pull_blob = (repo, src)
        rates = [mbps(s.big_blob, t) for t in times]
        return {"unit": "MB/s", "value": rnd(statistics.median(rates)),
                "samples": [rnd(r) for r in rates], "blob_bytes": s.big_blob}

    # 2
    def push_chunked(self) -> dict[str, Any]:
        s = self.sizes
        repo = self.repo("push_chunked")
        c = self.reg.conn()
        times = []
        for i in range(s.push_reps):
            src = BlobSource(s.big_blob)
            log(f"chunked push {i + 1}/{s.push_reps} ({s.big_blob // MiB} MiB "
                f"in {s.chunk // MiB} MiB chunks)")
            times.append(self.reg.push_chunked(c, repo, src, s.chunk))
            self.reg.check_blob(c, repo, src.digest, src.size)
        rates = [mbps(s.big_blob, t) for t in times]
        return {"unit": "MB/s", "value": rnd(statistics.median(rates)),
                "samples": [rnd(r) for r in rates], "blob_bytes": s.big_blob,
                "chunk_bytes": s.chunk}

    def pull_blob(self) -> tuple[str, BlobSource]:
        if self._pull_blob is None:
            repo = self.repo("pull")
            src = BlobSource(self.sizes.big_blob)
            log(f"pushing a {src.size // MiB} MiB blob to pull")
            self.reg.push_monolithic(self.reg.conn(), repo, src)
            settle_writes()
            self._pull_blob = (repo, src)
        return self._pull_blob

    # 3
    def pull(self) -> dict[str, Any]:
        s = self.sizes
        repo, src = self.pull_blob()
        c = self.reg.conn()
        target = f"/v2/{repo}/blobs/{src.digest}"
        log("pull: verification pass (sha256, untimed)")
        n, got = c.download(target, verify=True)
        if n != src.size or got != src.digest:
            raise BenchError(f"pulled blob mismatch: {n} bytes, {got} != {src.digest}")
        rates = []
        for i in range(s.pull_reps):
            log(f"pull {i + 1}/{s.pull_reps}")
            t0 = time.perf_counter()
            n, _ = c.download(target)
            t = time.perf_counter() - t0
            if n != src.size:
                raise BenchError(f"pulled {n} bytes, expected {src.size}")
            rates.append(mbps(n, t))
        return {"unit": "MB/s", "value": rnd(statistics.median(rates)),
                "samples": [rnd(r) for r in rates], "blob_bytes": src.size,
                "digest_verified": True}

    # 4
    def pull_concurrent(self) -> dict[str, Any]:
        s = self.sizes
        repo, src = self.pull_blob()
        target = f"/v2/{repo}/blobs/{src.digest}"
        k = s.concurrent_pulls
        conns = [self.reg.conn() for _ in range(k)]
        for c in conns:  # open the connections before timing
            expect(c.request("HEAD", target), (200,), "HEAD blob")
        rates = []
        with ThreadPoolExecutor(max_workers=k) as pool:
            for i in range(s.concurrent_reps):
                log(f"{k} concurrent pulls {i + 1}/{s.concurrent_reps}")
                barrier = threading.Barrier(k + 1, timeout=60)

                def one(c: Conn, b: threading.Barrier = barrier) -> int:
                    b.wait()
                    return c.download(target)[0]

                futs = [pool.submit(one, c) for c in conns]
                barrier.wait()
                t0 = time.perf_counter()
                sizes = [f.result(timeout=HTTP_TIMEOUT) for f in futs]
                t = time.perf_counter() - t0
                if any(n != src.size for n in sizes):
                    raise BenchError(f"concurrent pull sizes {sizes}")
                rates.append(mbps(sum(sizes), t))
        return {"unit": "MB/s", "value": rnd(statistics.median(rates)),
                "samples": [rnd(r) for r in rates], "blob_bytes": src.size, "clients": k}

    # 5
    def push_small(self) -> dict[str, Any]:
        """The median of `small_reps` samples, each pushing `small_blobs` fresh blobs: one
        sample lasts a few seconds, and on a shared machine the CPU's speed drifts by tens
        of percent over such spans (bench/PROFILE.md, session 8)."""
        s = self.sizes
        repo = self.repo("push_small")
        rng = random.Random()
        workers = s.small_concurrency
        conns = [self.reg.conn() for _ in range(workers)]
        for c in conns:
            expect(c.request("GET", "/v2/"), (200,), "GET /v2/")
        rates: list[float] = []
        seconds: list[float] = []
        done_total = bytes_total = 0
        cpu0 = self.server_cpu()
        for rep in range(s.small_reps):
            blobs = [os.urandom(rng.randint(s.small_min, s.small_max))
                     for _ in range(s.small_blobs)]
            log(f"pushing {len(blobs)} small blobs over {workers} connections "
                f"({rep + 1}/{s.small_reps})")

            def worker(idx: int, blobs: list[bytes] = blobs) -> int:
                c = conns[idx]
                for data in blobs[idx::workers]:
                    self.reg.push_bytes(c, repo, data)
                return len(blobs[idx::workers])

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=workers) as pool:
                done = sum(pool.map(worker, range(workers), timeout=HTTP_TIMEOUT))
            t = time.perf_counter() - t0
            rates.append(done / t)
            seconds.append(t)
            done_total += done
            bytes_total += sum(map(len, blobs))
            # spot-check a few (untimed)
            for data in blobs[:: max(1, len(blobs) // 10)]:
                self.reg.check_blob(conns[0], repo, sha256_digest(data), len(data))
        cpu = self.cpu_per_op(cpu0, done_total)
        return {"unit": "blobs/s", "value": rnd(statistics.median(rates)),
                "samples": [rnd(r) for r in rates], "blobs": s.small_blobs,
                "bytes_total": bytes_total, "connections": workers,
                "seconds": [rnd(x, 3) for x in seconds],
                "method": "POST + PUT ?digest= per blob",
                "server_cpu_ms_per_blob": cpu}

    # 6
    def manifest_get(self) -> dict[str, Any]:
        repo = self.repo("manifest_get")
        c = self.reg.conn()
        manifest, _ = self.reg.push_image(c, repo, "latest")
        target = f"/v2/{repo}/manifests/latest"
        r = expect(c.request("GET", target, {"Accept": OCI_MANIFEST}), (200,), "GET manifest")
        if r.body != manifest:
            raise BenchError("manifest GET returned different bytes")
        cpu0 = self.server_cpu()
        out = self._manifest_load(self.reg.url + target, self.reg.auth)
        out.update(manifest_bytes=len(manifest),
                   auth="Basic" if self.reg.auth else "none",
                   server_cpu_ms_per_request=self.cpu_per_op(cpu0, out.get("requests") or 0))
        return out

    def _manifest_load(self, url: str, auth: str | None) -> dict[str, Any]:
        s = self.sizes
        out = self._load(url, s.manifest_connections, s.manifest_seconds, auth)
        out.update(unit="requests/s", connections=s.manifest_connections,
                   seconds=s.manifest_seconds)
        return out

    # 9
    def manifest_get_bearer(self) -> dict[str, Any]:
        """Row 6 with `Authorization: Bearer <token>`: the token comes from the realm of the
        registry's challenge, requested with the Basic credentials for `repository:R:pull`."""
        if not self.reg.auth:
            return {"skipped": "n/a: needs credentials (--user or --aws-credentials)"}
        probe = Conn(self.reg.url)
        r = probe.request("GET", "/v2/")
        challenge = r.header("WWW-Authenticate") or ""
        if r.status != 401 or not challenge.lower().startswith("bearer "):
            return {"skipped": f"n/a: GET /v2/ without credentials answered {r.status} with no "
                               "Bearer challenge (no token authentication)"}
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.get("realm")
        if not realm:
            raise BenchError(f"Bearer challenge without realm: {challenge!r}")
        repo = self.repo("manifest_get_bearer")
        c = self.reg.conn()
        manifest, _ = self.reg.push_image(c, repo, "latest")
        query = {"scope": f"repository:{repo}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        token_conn = Conn(realm, auth=self.reg.auth)
        t0 = time.perf_counter()
        r = expect(token_conn.request("GET", with_query(realm, **query)), (200,), "GET token")
        token_ms = (time.perf_counter() - t0) * 1000
        body = json.loads(r.body)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise BenchError(f"token endpoint answered without a token: {r.body[:200]!r}")
        bearer = f"Bearer {token}"
        target = f"/v2/{repo}/manifests/latest"
        check = Conn(self.reg.url, auth=bearer)
        r = expect(check.request("GET", target, {"Accept": OCI_MANIFEST}), (200,),
                   "GET manifest with the Bearer token")
        if r.body != manifest:
            raise BenchError("manifest GET returned different bytes")
        out = self._manifest_load(self.reg.url + target, bearer)
        out.update(manifest_bytes=len(manifest), auth="Bearer",
                   token_request_ms=rnd(token_ms, 2), token_expires_in=body.get("expires_in"))
        return out

    # 10
    def describe_images(self) -> dict[str, Any]:
        """ECR DescribeImages over one repository of `ecr_images` images: every page with
        maxResults=`ecr_page` (boto3), one first page, and the last page (via its token)."""
        if self.aws is None:
            return {"skipped": "n/a: needs --aws-credentials (a key for the ECR API)"}
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            return {"skipped": f"n/a: boto3 is not installed ({exc})"}
        s = self.sizes
        client = boto3.client(
            "ecr", endpoint_url=self.reg.url, region_name=self.region,
            aws_access_key_id=self.aws[0], aws_secret_access_key=self.aws[1],
            config=Config(retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=10, read_timeout=HTTP_TIMEOUT))
        try:
            client.describe_registry()
        except Exception as exc:  # any registry without the ECR API
            return {"skipped": f"n/a: no ECR API at POST / ({type(exc).__name__}: "
                               f"{str(exc)[:200]})"}
        repo = self.repo("describe_images")
        client.create_repository(repositoryName=repo)
        c = self.reg.conn()
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cfg_digest = self.reg.push_bytes(c, repo, config)
        n = s.ecr_images
        workers = s.ecr_push_concurrency
        conns = [self.reg.conn() for _ in range(workers)]

        def manifest(i: int) -> bytes:
            return json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(config)},
                "layers": [], "annotations": {"bench.image": str(i)},
            }, separators=(",", ":")).encode()

        def pusher(idx: int) -> int:
            for i in range(idx, n, workers):
                self.reg.put_manifest(conns[idx], repo, f"i{i:05d}", manifest(i))
            return len(range(idx, n, workers))

        log(f"pushing {n} manifests (one shared config blob) over {workers} connections")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pushed = sum(pool.map(pusher, range(workers), timeout=3600))
        push_s = time.perf_counter() - t0

        walk_ms: list[float] = []
        pages = 0
        last_token: str | None = None
        for rep in range(s.ecr_reps):
            log(f"DescribeImages: every page, maxResults={s.ecr_page} ({rep + 1}/{s.ecr_reps})")
            seen: set[str] = set()
            count = 0
            pages = 0
            token: str | None = None
            t0 = time.perf_counter()
            for _ in range(n // s.ecr_page + 5):
                kwargs: dict[str, Any] = {"repositoryName": repo, "maxResults": s.ecr_page}
                if token:
                    kwargs["nextToken"] = token
                    last_token = token
                page = client.describe_images(**kwargs)
                pages += 1
                details = page["imageDetails"]
                count += len(details)
                seen.update(d["imageDigest"] for d in details)
                token = page.get("nextToken")
                if not token:
                    break
            else:
                raise BenchError("DescribeImages pagination did not end")
            walk_ms.append((time.perf_counter() - t0) * 1000)
            if count != n or len(seen) != n:
                raise BenchError(f"DescribeImages returned {count} images ({len(seen)} "
                                 f"distinct), expected {n}")

        def one_page(token: str | None) -> float:
            kwargs: dict[str, Any] = {"repositoryName": repo, "maxResults": s.ecr_page}
            if token:
                kwargs["nextToken"] = token
            t0 = time.perf_counter()
            page = client.describe_images(**kwargs)
            elapsed = (time.perf_counter() - t0) * 1000
            if not page["imageDetails"]:
                raise BenchError("an empty DescribeImages page")
            return elapsed

        reps = max(3, s.ecr_reps * 2)
        first_ms = [one_page(None) for _ in range(reps)]
        last_ms = [one_page(last_token) for _ in range(reps)] if last_token else []
        return {
            "unit": "ms", "images": pushed, "page_size": s.ecr_page, "pages": pages,
            "all_pages_ms": rnd(statistics.median(walk_ms), 1),
            "all_pages_samples": [rnd(x, 1) for x in walk_ms],
            "images_per_s": rnd(n / (statistics.median(walk_ms) / 1000)),
            "first_page_ms": rnd(statistics.median(first_ms), 2),
            "first_page_samples": [rnd(x, 2) for x in first_ms],
            "last_page_ms": rnd(statistics.median(last_ms), 2) if last_ms else None,
            "last_page_samples": [rnd(x, 2) for x in last_ms],
            "push_per_s": rnd(pushed / push_s), "push_connections": workers,
            "client": "boto3 describe_images (SigV4, JSON parsing included)",
        }

    def _load(self, url: str | list[str], conns: int, seconds: int,
              auth: str | None) -> dict[str, Any]:
        """GET load from wrk when it is installed (a C client: it leaves the shared CPUs to
        the server), else from the aiohttp load generator."""
        wrk = shutil.which("wrk") if self.load_tool in ("auto", "wrk") else None
        if self.load_tool == "wrk" and not wrk:
            raise BenchError("--load-tool wrk but wrk is not installed")
        if wrk:
            with tempfile.TemporaryDirectory(prefix="registry-bench-wrk-") as scratch:
                return self._wrk(wrk, url, conns, seconds, auth, Path(scratch))
        log("using the aiohttp load generator" + ("" if self.load_tool == "aiohttp"
                                                   else " (wrk not installed)"))
        return asyncio.run(self._aiohttp_load(url, conns, seconds, auth))

    def _wrk(self, wrk: str, url: str | list[str], conns: int, seconds: int,
             auth: str | None, scratch: Path) -> dict[str, Any]:
        # wrk shares the machine with the server: give it a quarter of the CPUs (>= 1 thread;
        # one wrk thread alone sustains tens of thousands of requests/s).
        threads = max(1, min((os.cpu_count() or 1) // 4, conns))
        headers = ["-H", f"Accept: {OCI_MANIFEST}"]
        if auth:
            headers += ["-H", f"Authorization: {auth}"]
        base = [wrk, "-t", str(threads), "-c", str(conns), "--timeout", "10s", *headers]
        urls = [url] if isinstance(url, str) else url
        url = urls[0]
        if len(urls) > 1:  # each connection's requests walk the list, round-robin
            paths = ", ".join(json.dumps(urlsplit(u).path) for u in urls)
            script = scratch / "paths.lua"
            script.write_text(f"local paths = {{{paths}}}\nlocal i = 0\n"
                              "request = function()\n  i = i + 1\n"
                              "  return wrk.format(nil, paths[(i % #paths) + 1])\nend\n")
            base += ["-s", str(script)]
        log("wrk warm-up (2 s)")
        subprocess.run([*base, "-d", "2s", url], capture_output=True, timeout=60, check=False)
        log(f"wrk {conns} connections, {seconds} s")
        p = subprocess.run([*base, "--latency", "-d", f"{seconds}s", url], capture_output=True,
                           text=True, timeout=seconds + 60, check=False)
        text = p.stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        if p.returncode != 0 or not m:
            raise BenchError(f"wrk failed ({p.returncode}): {text[-500:]} {p.stderr[-500:]}")
        total = re.search(r"(\d+) requests in", text)
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                         text)
        lat = dict(re.findall(r"^\s*(50|75|90|99)%\s+(\S+)\s*$", text, re.M))
        non2xx_n = int(non2xx.group(1)) if non2xx else 0
        out: dict[str, Any] = {
            "value": rnd(float(m.group(1))), "tool": f"wrk -t{threads} -c{conns}",
            "requests": int(total.group(1)) if total else None,
            "non_2xx": non2xx_n,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
            "latency_p50": lat.get("50"), "latency_p90": lat.get("90"),
            "latency_p99": lat.get("99"),
            "wrk_output": text.strip().splitlines()[-12:],
        }
        if non2xx_n:
            out["warning"] = f"{non2xx_n} non-2xx responses were counted in requests/s"
        return out

    async def _aiohttp_load(self, url: str | list[str], conns: int, seconds: int,
                            auth: str | None) -> dict[str, Any]:
        """`conns` connections GET `url` (a list: each connection walks it round-robin, from
        its own starting point) for `seconds`, after one warm-up request each."""
        import aiohttp

        headers = {"Accept": OCI_MANIFEST}
        if auth:
            headers["Authorization"] = auth
        urls = [url] if isinstance(url, str) else url
        counts = {"ok": 0, "bad": 0, "errors": 0}
        lat: list[float] = []
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=conns)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async def warm(k: int) -> None:
                async with session.get(urls[k % len(urls)], headers=headers) as r:
                    await r.read()

            await asyncio.gather(*(warm(k) for k in range(conns)))
            deadline = time.perf_counter() + seconds

            async def worker(k: int) -> None:
                for i in range(k, k + 10_000_000):
                    if time.perf_counter() >= deadline:
                        return
                    t0 = time.perf_counter()
                    try:
                        async with session.get(urls[i % len(urls)], headers=headers) as r:
                            await r.read()
                            counts["ok" if r.status == 200 else "bad"] += 1
                    except (TimeoutError, aiohttp.ClientError):
                        counts["errors"] += 1
                    lat.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(conns)))
            elapsed = time.perf_counter() - t0
        lat.sort()

        def pct(p: float) -> str | None:
            return f"{lat[min(len(lat) - 1, int(p * len(lat)))] * 1000:.2f}ms" if lat else None

        return {"value": rnd(counts["ok"] / elapsed), "tool": f"aiohttp ({conns} connections)",
                "requests": counts["ok"] + counts["bad"], "non_2xx": counts["bad"],
                "socket_errors": counts["errors"], "latency_p50": pct(0.5),
                "latency_p90": pct(0.9), "latency_p99": pct(0.99)}

    # 11
    def pull_load(self) -> dict[str, Any]:
        """Issue 12's "200-connection pull load": a small image's manifest (by tag) and small
        blobs, GET in turn over 200 connections; requests/s, latency percentiles, errors."""
        s = self.sizes
        repo = self.repo("pull_load")
        c = self.reg.conn()
        self.reg.push_image(c, repo, "latest")
        urls = [f"{self.reg.url}/v2/{repo}/manifests/latest"]
        for _ in range(s.pull_load_blobs):
            digest = self.reg.push_bytes(c, repo, os.urandom(random.randint(1 * KiB, 16 * KiB)))
            # Half manifest GETs, half blob GETs.
            urls += [f"{self.reg.url}/v2/{repo}/blobs/{digest}", urls[0]]
        urls.pop()
        log(f"pull load: {s.pull_load_connections} connections, {s.pull_load_seconds} s, "
            f"manifest and {s.pull_load_blobs} blobs in turn")
        cpu0 = self.server_cpu()
        out = self._load(urls, s.pull_load_connections, s.pull_load_seconds, self.reg.auth)
        out.update(unit="requests/s", connections=s.pull_load_connections,
                   seconds=s.pull_load_seconds, mix="manifest by tag, small blobs (1-16 KiB)",
                   server_cpu_ms_per_request=self.cpu_per_op(cpu0, out["requests"]))
        return out

    # 7
    def tags_list(self) -> dict[str, Any]:
        s = self.sizes
        repo = self.repo("tags_list")
        c = self.reg.conn()
        manifest, _ = self.reg.push_image(c, repo, "t00000")
        tags = [f"t{i:05d}" for i in range(s.tags)]
        workers = s.tag_concurrency
        conns = [self.reg.conn() for _ in range(workers)]
        log(f"tagging one manifest {s.tags} times over {workers} connections")

        def tagger(idx: int) -> int:
            for tag in tags[idx::workers]:
                self.reg.put_manifest(conns[idx], repo, tag, manifest)
            return len(tags[idx::workers])

        t0, cpu0 = time.perf_counter(), self.server_cpu()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            sum(pool.map(tagger, range(workers), timeout=HTTP_TIMEOUT))
        tag_secs = time.perf_counter() - t0
        tag_cpu = self.cpu_per_op(cpu0, len(tags))
        target = f"/v2/{repo}/tags/list"

        full_ms = []
        for _ in range(s.list_reps):
            t0 = time.perf_counter()
            r = expect(c.request("GET", target), (200,), "GET tags/list")
            got = json.loads(r.body)["tags"]
            full_ms.append((time.perf_counter() - t0) * 1000)
            if sorted(got) != tags:
                raise BenchError(f"tags/list returned {len(got)} tags, expected {len(tags)}")
        full_has_link = r.header("Link") is not None
        full_in_order = got == tags

        page_ms = []
        pages = 0
        honors_n = True
        in_order = True
        for _ in range(s.list_reps):
            seen: list[str] = []
            pages = 0
            url: str | None = with_query(target, n=s.tag_page)
            t0 = time.perf_counter()
            for _ in range(s.tags // max(1, s.tag_page) + 5):
                if url is None:
                    break
                r = expect(c.request("GET", url), (200,), "GET tags/list?n=")
                page = json.loads(r.body).get("tags") or []
                honors_n = honors_n and len(page) <= s.tag_page
                seen.extend(page)
                pages += 1
                url = next_link(r.header("Link"))
                if url is not None:
                    url = c.url(url)
            else:
                raise BenchError("pagination did not end")
            page_ms.append((time.perf_counter() - t0) * 1000)
            if sorted(seen) != tags:
                raise BenchError(f"paginated listing returned {len(seen)} tags "
                                 f"({len(set(seen))} distinct), expected {len(tags)}")
            in_order = in_order and seen == tags
        return {
            "unit": "ms", "tags": s.tags,
            "full_ms": rnd(statistics.median(full_ms), 2),
            "full_samples": [rnd(x, 2) for x in full_ms],
            "full_response_has_link": full_has_link, "full_in_order": full_in_order,
            "paginated_ms": rnd(statistics.median(page_ms), 2),
            "paginated_samples": [rnd(x, 2) for x in page_ms],
            "page_size": s.tag_page, "pages": pages, "server_honors_n": honors_n,
            "paginated_in_order": in_order,
            "tagging_per_s": rnd(s.tags / tag_secs), "tagging_connections": workers,
            "tagging_server_cpu_ms_per_tag": tag_cpu,
        }

    # 8
    def memory(self) -> dict[str, Any]:
        if self.pid is None:
            return {"skipped": "no --pid given"}
        if not os.path.exists(f"/proc/{self.pid}/status"):
            raise BenchError(f"no process {self.pid} (the server must run on this machine)")
        s = self.sizes
        repo = self.repo("memory")
        src = BlobSource(s.memory_blob)
        log(f"memory: digesting the {s.memory_blob // MiB} MiB blob (first pass)")
        _ = src.digest
        c = self.reg.conn()
        expect(c.request("GET", "/v2/"), (200,), "GET /v2/")
        sampler = RssSampler(self.pid)
        sampler.phase = "baseline"
        sampler.start()
        time.sleep(1.0)
        sampler.mark("push")
        log("memory: pushing")
        push_s = self.reg.push_monolithic(c, repo, src)
        settle_writes()
        sampler.mark("pull")
        log("memory: pulling")
        t0 = time.perf_counter()
        n, _ = c.download(f"/v2/{repo}/blobs/{src.digest}")
        pull_s = time.perf_counter() - t0
        sampler.mark("after")
        time.sleep(0.5)
        sampler.stop()
        if n != src.size:
            raise BenchError(f"pulled {n} bytes, expected {src.size}")
        rss = {k: rnd(v / 1024) for k, v in sampler.peak_rss.items()}
        pss = {k: rnd(v / 1024) for k, v in sampler.peak_pss.items()}
        # Issue 12 counts memory per worker: each process's PSS now (after the big transfers).
        per_process = sorted(rnd(_status_kib(p, "Pss:", "smaps_rollup") / 1024)
                             for p in process_tree(self.pid)) if sampler.has_pss else None
        return {
            "pss_per_process_mib": per_process,
            "unit": "MiB", "blob_bytes": src.size,
            "baseline_rss_mib": rss.get("baseline"),
            "peak_rss_mib": max(rss.get("push", 0), rss.get("pull", 0)),
            "peak_rss_push_mib": rss.get("push"), "peak_rss_pull_mib": rss.get("pull"),
            "baseline_pss_mib": pss.get("baseline") if sampler.has_pss else None,
            "peak_pss_mib": max(pss.get("push", 0), pss.get("pull", 0))
            if sampler.has_pss else None,
            "processes": sampler.max_procs, "samples": sampler.samples,
            "push_MB_s": rnd(mbps(src.size, push_s)), "pull_MB_s": rnd(mbps(src.size, pull_s)),
        }


def next_link(link: str | None) -> str | None:
    if not link:
        return None
    for part in link.split(","):
        m = re.match(r'\s*<([^>]*)>\s*;(.*)$', part)
        if m and re.search(r'rel\s*=\s*"?next"?', m.group(2)):
            return m.group(1)
    return None


# --------------------------------------------------------------------------- main


def parse_only(spec: str | None) -> list[str]:
    if not spec:
        return list(ROWS)
    out: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item.isdigit() and 1 <= int(item) <= len(ROWS):
            name = ROWS[int(item) - 1]
        elif item in ROWS:
            name = item
        else:
            raise SystemExit(f"unknown row {item!r}; rows: 1-{len(ROWS)} or {', '.join(ROWS)}")
        if name not in out:
            out.append(name)
    return sorted(out, key=ROWS.index)


def read_aws_credentials(path: str) -> tuple[str, str]:
    """(access key id, secret) of the [default] profile of an AWS shared-credentials file."""
    parser = configparser.ConfigParser()
    if not parser.read(path):
        raise SystemExit(f"cannot read {path}")
    try:
        section = parser["default"]
        return section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip()
    except KeyError as exc:
        raise SystemExit(f"{path}: no [default] aws_access_key_id/aws_secret_access_key "
                         f"({exc})") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="registry base URL, e.g. http://127.0.0.1:5000")
    ap.add_argument("--pid", type=int, help="server PID (local), for the memory row")
    ap.add_argument("--only", help=f"comma-separated rows (numbers 1-{len(ROWS)} or names)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--user", help="basic-auth user:password (optional)")
    ap.add_argument("--aws-credentials", metavar="FILE",
                    help="AWS shared-credentials file ([default] profile): its key signs the "
                         "ECR API requests of row 10 and, unless --user is given, is the "
                         "Basic auth of every /v2 request")
    ap.add_argument("--region", default="us-east-1", help="region for SigV4 (row 10)")
    ap.add_argument("--load-tool", choices=["auto", "wrk", "aiohttp"], default="auto",
                    help="row 6 load generator (auto: wrk if installed, else aiohttp)")
    ap.add_argument("--memory-blob-mib", type=int,
                    help="size of row 8's blob (default: 1024, or 64 with --quick)")
    ap.add_argument("--clients", type=int, metavar="N",
                    help="concurrent clients for the write rows 5 and 7 (default 4)")
    args = ap.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    if args.memory_blob_mib:
        sizes = replace(sizes, memory_blob=args.memory_blob_mib * MiB)
    if args.clients:
        sizes = replace(sizes, small_concurrency=args.clients, tag_concurrency=args.clients)
    aws = read_aws_credentials(args.aws_credentials) if args.aws_credentials else None
    user = args.user or (f"{aws[0]}:{aws[1]}" if aws else None)
    auth = ("Basic " + base64.b64encode(user.encode()).decode()) if user else None
    rows = parse_only(args.only)
    bench = Bench(args.url, sizes, args.pid, auth, args.load_tool, aws, args.region)
    c = bench.reg.conn()
    try:
        r = c.request("GET", "/v2/")
    except (OSError, BenchError) as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    if r.status != 200:
        print(f"GET /v2/ answered {r.status}; anonymous access (or working --user / "
              "--aws-credentials) is required", file=sys.stderr)
        return 2
    result: dict[str, Any] = {
        "url": args.url, "pid": args.pid, "quick": args.quick, "run_id": bench.run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "client": {"python": platform.python_version(), "wrk": shutil.which("wrk")},
        "server_header": r.header("Server"),
        "api_version_header": r.header("Docker-Distribution-API-Version"),
        "sizes": asdict(sizes), "rows": {},
    }
    for name in rows:
        log(f"== {name}")
        settle_writes()
        t0 = time.perf_counter()
        cpu0 = tree_cpu_seconds(args.pid) if args.pid else None
        try:
            out = getattr(bench, name)()
        except Exception as exc:  # one failing row must not hide the others
            log(f"{name} failed: {exc!r}")
            out = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        out["row_seconds"] = rnd(time.perf_counter() - t0, 2)
        if cpu0 is not None:
            # Server CPU over the whole row, set-up and checks included.
            out["server_cpu_s"] = rnd(tree_cpu_seconds(args.pid) - cpu0, 2)
        result["rows"][name] = out
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
