"""Console benchmark: time to first byte and page weight of the heaviest console pages.

Starts a fresh Cargohold (access control on, SQLite, one worker) on a free port, pushes a
repository with 10,000 images (distinct manifests sharing their blobs) and an artifact with 100
referrers over the distribution API, signs in to the console, then fetches each page N times.
TTFB is measured to the end of the response headers (aiohttp sends headers and body of these
pages together); page weight is the HTML plus the console's CSS and JS. Prints a Markdown table;
`--write` also puts it in bench/RESULTS.md between console-bench markers. No assertions.

    python bench/console_bench.py [--images 10000] [--referrers 100] [--repeat 20] [--write]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.console_content import OCI_MANIFEST, Pusher  # noqa: E402

MARK_START = "<!-- console-bench:start -->"
MARK_END = "<!-- console-bench:end -->"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cargohold", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--data-dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/v2/", timeout=1).status_code == 401:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def credentials(data_dir: Path) -> tuple[str, str]:
    values = dict(line.split(" = ", 1) for line in
                  (data_dir / "admin-credentials").read_text().splitlines() if " = " in line)
    return values["aws_access_key_id"], values["aws_secret_access_key"]


def populate(url: str, auth: tuple[str, str], images: int, referrers: int) -> None:
    seed = Pusher(url, auth)
    base = seed.image("bench/many", "seed")
    document = json.loads(seed.session.get(f"{url}/v2/bench/many/manifests/seed",
                                           headers={"Accept": OCI_MANIFEST}).content)
    start = time.monotonic()

    def push(n: int) -> None:
        pusher = pushers[n % len(pushers)]
        pusher.manifest("bench/many", {**document, "annotations": {"n": str(n)}},
                        f"v{n}" if n % 2 == 0 else None)

    pushers = [Pusher(url, auth) for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(push, range(images - 1)))
    print(f"pushed {images} images in {time.monotonic() - start:.1f} s", file=sys.stderr)
    subject = seed.image("bench/refs", "1")
    for n in range(referrers):
        kind = ("application/spdx+json" if n % 2 else
                "application/vnd.dev.cosign.artifact.sig.v1+json")
        seed.referrer("bench/refs", subject, kind, f"payload {n}".encode(),
                      {"org.opencontainers.image.created": "2026-01-01", "n": str(n)})
    del base


def signed_in(url: str, auth: tuple[str, str]) -> requests.Session:
    session = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', session.get(f"{url}/console/signin").text)
    assert token is not None
    session.post(f"{url}/console/signin", data={"csrf": token.group(1),
                                                "access_key_id": auth[0],
                                                "secret_access_key": auth[1]})
    return session


def measure(session: requests.Session, url: str, repeat: int) -> tuple[list[float], int]:
    ttfb: list[float] = []
    size = 0
    for _ in range(repeat + 2):
        start = time.perf_counter()
        response = session.get(url, stream=True)
        first = time.perf_counter() - start
        size = len(response.content)
        assert response.status_code == 200, (url, response.status_code)
        ttfb.append(first * 1000)
    return ttfb[2:], size  # two warm-up requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--referrers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="console-bench-")) / "data"
    proc, url = start_server(data_dir)
    try:
        auth = credentials(data_dir)
        populate(url, auth, args.images, args.referrers)
        session = signed_in(url, auth)
        assets = sum(len(session.get(f"{url}/console/static/{name}").content)
                     for name in ("console.css", "console.js"))
        pages = [
            (f"Repository page, {args.images:,} images, first page (newest)",
             "/console/r/bench/many"),
            (f"Repository page, {args.images:,} images, page 100",
             "/console/r/bench/many?page=100"),
            (f"Repository page, {args.images:,} images, filtered: tagged, tag contains '99'",
             "/console/r/bench/many?status=TAGGED&tag=99"),
            (f"Repository page, {args.images:,} images, filtered by kind (SBOM: no match)",
             "/console/r/bench/many?kind=sbom"),
            (f"Artifact page with {args.referrers} referrers", "/console/r/bench/refs/-/a/1"),
            ("Repositories page", "/console/"),
        ]
        rows = []
        for label, path in pages:
            samples, size = measure(session, url + path, args.repeat)
            samples.sort()
            rows.append(f"| {label} | {statistics.median(samples):.1f} | "
                        f"{samples[int(len(samples) * 0.9) - 1]:.1f} | {size / 1024:.1f} | "
                        f"{(size + assets) / 1024:.1f} |")
            print(rows[-1], file=sys.stderr)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=15)
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    load = os.getloadavg()
    table = "\n".join([
        MARK_START, "## Web console (`bench/console_bench.py`)", "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; one worker, SQLite, access control on, signed in.",
        f"- The machine was shared with other developers' test runs (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end); figures are indicative.",
        f"- {args.repeat} requests per page after 2 warm-ups; TTFB to the end of the headers; "
        "weight = HTML, and HTML + the console's CSS and JS (no other assets, no images).", "",
        "| Page | TTFB median (ms) | TTFB p90 (ms) | HTML (KB) | HTML + CSS + JS (KB) |",
        "|---|---:|---:|---:|---:|", *rows, MARK_END])
    print(table)
    if args.write:
        results = ROOT / "bench" / "RESULTS.md"
        text = results.read_text()
        if MARK_START in text:
            text = text[:text.index(MARK_START)] + table + text[text.index(MARK_END) +
                                                                len(MARK_END):]
        else:
            text = text.rstrip("\n") + "\n\n" + table + "\n"
        results.write_text(text)


if __name__ == "__main__":
    main()
