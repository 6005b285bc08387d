"""Pull-through cache benchmark: the first pull through the cache against a direct pull from
the upstream (the CNCF registry), and a cached pull against a normal pull from Cargohold.

One image = a manifest, a config and one LAYER_MIB layer (random, so every first pull is a
real upstream fetch). Each figure is the median of RUNS whole-image pulls (manifest + blobs,
streamed and discarded by one `requests` client), with the servers' CPU time per pull
(utime + stime of every process of each server, from /proc): on a shared machine the CPU
time is the steadier figure. Writes a section into bench/RESULTS.md.
Not a test: nothing asserts timings.

With --link-mbps N, the upstream is reached (by the client's direct pulls and by the cache's
fetches alike) through a TCP relay that paces the bytes to N MB/s, one link for all
connections: a pull-through cache usually sits far from its upstream, and on loopback the
first pull measures only the CPU that the cache, the upstream and the client share.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SECTION = "## Pull-through cache"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited early")
        try:
            if requests.get(url + "/v2/", timeout=1).status_code in (200, 401):
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


class Link:
    """Bytes paced to `rate` bytes/s, shared by every connection through it."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.free_at = 0.0

    def take(self, size: int) -> None:
        with self.lock:
            now = time.monotonic()
            # A little credit for time overslept, so the link keeps its rate on average.
            self.free_at = max(self.free_at, now - 0.005) + size / self.rate
            delay = self.free_at - now
        if delay > 0:
            time.sleep(delay)


def serve_link(listen_port: int, target_port: int, mbps: float) -> None:
    """Relay 127.0.0.1:listen_port to 127.0.0.1:target_port, the answers paced (--serve-link)."""
    link = Link(mbps * 1e6)

    def pump(source: socket.socket, sink: socket.socket, paced: bool) -> None:
        try:
            while chunk := source.recv(64 * 1024):
                if paced:
                    link.take(len(chunk))
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    with socket.create_server(("127.0.0.1", listen_port)) as listener:
        while True:
            client, _ = listener.accept()
            target = socket.create_connection(("127.0.0.1", target_port))
            for source, sink, paced in ((client, target, False), (target, client, True)):
                threading.Thread(target=pump, args=(source, sink, paced), daemon=True).start()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(base: str, repo: str, layer_mib: int) -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "nonce": os.urandom(8).hex()}).encode()
    layer = os.urandom(layer_mib * 1024 * 1024)
    for blob in (config, layer):
        started = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=60)
        location = started.headers["Location"]
        location = base + location if location.startswith("/") else location
        sep = "&" if "?" in location else "?"
        done = requests.put(f"{location}{sep}digest={digest(blob)}", data=blob, timeout=300,
                            headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}]}).encode()
    put = requests.put(f"{base}/v2/{repo}/manifests/v1", data=manifest, timeout=60,
                       headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text
    return repo


def cpu_seconds(group: int) -> float:
    """CPU time (user + system) of every live process in a process group."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def pull(base: str, repo: str) -> float:
    """Seconds to pull the whole image (manifest, then each blob, streamed)."""
    start = time.perf_counter()
    manifest = requests.get(f"{base}/v2/{repo}/manifests/v1", timeout=300,
                            headers={"Accept": OCI_MANIFEST})
    assert manifest.status_code == 200, manifest.text
    document = manifest.json()
    for descriptor in [document["config"], *document["layers"]]:
        with requests.get(f"{base}/v2/{repo}/blobs/{descriptor['digest']}", stream=True,
                          timeout=300) as response:
            assert response.status_code == 200, response.text
            size = sum(len(chunk) for chunk in response.iter_content(1 << 20))
            assert size == descriptor["size"]
    return time.perf_counter() - start


def replace_section(text: str, section: str) -> str:
    """`text` with the section titled as `section`'s first line replaced (or appended); other
    sections stay."""
    title = section.split("\n", 1)[0] + "\n"
    if title not in text:
        return text.rstrip("\n") + "\n\n" + section
    start = text.index(title)
    following = [text.find(marker, start + len(title)) for marker in ("\n## ", "\n<!--")]
    end = min([i for i in following if i != -1], default=len(text))
    return text[:start] + section.rstrip("\n") + "\n" + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--layer-mib", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--link-mbps", type=float, default=0.0,
                        help="reach the upstream through a link paced to this many MB/s")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--serve-link", help=argparse.SUPPRESS)  # internal: the link's process
    args = parser.parse_args()
    if args.serve_link:
        listen, target, mbps = args.serve_link.split(":")
        serve_link(int(listen), int(target), float(mbps))
        return
    work = Path(tempfile.mkdtemp(prefix="cargohold-ptc-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_port, ch_port = free_port(), free_port()
        config = work / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work / 'upstream'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{up_port}\n")
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        procs.append(subprocess.Popen([binary, "serve", str(config)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        upstream = pushed_to = f"http://127.0.0.1:{up_port}"
        wait(upstream, procs[-1])
        if args.link_mbps:
            link_port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--serve-link",
                 f"{link_port}:{up_port}:{args.link_mbps}"], start_new_session=True))
            upstream = f"http://127.0.0.1:{link_port}"
            wait(upstream, procs[-1])
        data_dir = work / "cargohold"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cargohold", "serve", "--host", "127.0.0.1", "--port",
             str(ch_port), "--data-dir", str(data_dir), "--anonymous", "--workers",
             str(args.workers)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        cargohold = f"http://127.0.0.1:{ch_port}"
        wait(cargohold, procs[-1])
        import boto3  # the test extra

        creds = dict(line.split(" = ", 1) for line in
                     (data_dir / "admin-credentials").read_text().splitlines() if " = " in line)
        boto3.client("ecr", endpoint_url=cargohold, region_name="us-east-1",
                     aws_access_key_id=creds["aws_access_key_id"],
                     aws_secret_access_key=creds["aws_secret_access_key"]
                     ).create_pull_through_cache_rule(ecrRepositoryPrefix="up",
                                                      upstreamRegistryUrl=upstream)
        load_before = os.getloadavg()
        repos = [push(pushed_to, f"bench/img{i}", args.layer_mib) for i in range(args.runs)]
        local = [push(cargohold, f"local/img{i}", args.layer_mib) for i in range(args.runs)]
        direct, first, cached, normal = [], [], [], []
        cpu: dict[str, list[float]] = {name: [] for name in ("direct", "first", "cached",
                                                              "normal")}
        groups = [proc.pid for proc in procs[:2]]  # the servers, not the link

        def timed(kind: str, samples: list[float], base: str, repo: str) -> None:
            before = [cpu_seconds(group) for group in groups]
            samples.append(pull(base, repo))
            cpu[kind].append(sum(cpu_seconds(group) - was
                                 for group, was in zip(groups, before, strict=True)))

        for repo in repos:  # interleaved, so load changes on the shared machine hit all rows
            timed("direct", direct, upstream, repo)
            timed("first", first, cargohold, f"up/{repo}")
        time.sleep(2)  # let the last cached blob's fsync finish
        for repo, pushed in zip(repos, local, strict=True):
            timed("normal", normal, cargohold, pushed)
            timed("cached", cached, cargohold, f"up/{repo}")
        load_after = os.getloadavg()
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    mib = args.layer_mib

    def row(label: str, samples: list[float], kind: str) -> str:
        median = statistics.median(samples)
        return (f"| {label} | {median * 1000:.0f} | {mib / median:.0f} | "
                f"{statistics.median(cpu[kind]) * 1000:.0f} |")

    ratio_first = statistics.median(direct) / statistics.median(first)
    ratio_cached = statistics.median(normal) / statistics.median(cached)
    link = f" --link-mbps {args.link_mbps:g}" if args.link_mbps else ""
    lines = [
        SECTION + (f", upstream behind a {args.link_mbps:g} MB/s link" if link else ""), "",
        f"`python bench/pull_through_bench.py --runs {args.runs} --layer-mib {mib}{link}`: "
        f"one image "
        f"(manifest, config, one random {mib} MiB layer) pulled whole by one client; median of "
        f"{args.runs}. Cargohold: {args.workers} worker(s), SQLite, filesystem; upstream: the "
        "CNCF registry (filesystem). Server CPU is the utime + stime of both servers' "
        "processes during the pull (the upstream's alone for a direct pull). Load average "
        "before/after: "
        f"{' '.join(f'{x:.2f}' for x in load_before)} / "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (the client, both servers and anything "
        "else running share this machine's cores)."
        + (f" The upstream (for direct pulls and for the cache's fetches) is reached through "
           f"a relay process that paces its answers to {args.link_mbps:g} MB/s, one link for "
           "all connections; its CPU is not counted." if link else ""), "",
        "| pull | ms | MiB/s | server CPU ms |", "|---|---|---|---|",
        row("direct from the upstream (CNCF registry)", direct, "direct"),
        row("first pull through the cache (fetch + store + stream)", first, "first"),
        row("cached pull through the cache", cached, "cached"),
        row("normal pull from Cargohold (pushed there)", normal, "normal"), "",
        f"First pull through the cache vs direct: {ratio_first:.2f}x (target >= 0.8x); "
        f"cached pull vs normal pull: {ratio_cached:.2f}x (target 1x).", "",
    ]
    args.results.write_text(replace_section(
        args.results.read_text() if args.results.exists() else "", "\n".join(lines)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
