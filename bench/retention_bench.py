#!/usr/bin/env python3
"""Retention benchmark: garbage collection, pushes while it runs, lifecycle evaluation.

    python bench/retention_bench.py [--quick] [--write-results]

Rows:
    R1 gc_100k       GC of 100,000 blobs of which half are garbage (metadata rows and small
                     files created directly for the set-up), seconds for the dry run and the run
    R2 push_with_gc  small-image pushes (one 1 KiB layer + config + manifest, 4 connections) to a
                     2-worker server for a fixed time, images/s, without and with a collector
                     running back to back against the same data directory (grace 60 s, so the
                     collector works but does not race the pushes)
    R3 lifecycle_10k lifecycle evaluation of a repository of 10,000 images: the evaluator alone,
                     and preview through the stores (read + evaluate), ms

Prints one JSON object on stdout; `--write-results` also replaces the retention section of
bench/RESULTS.md. Nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cargohold.config import load_settings  # noqa: E402
from cargohold.services.retention.gc import GarbageCollector  # noqa: E402
from cargohold.services.retention.lifecycle import LifecycleService, evaluate  # noqa: E402
from cargohold.services.storage import Storage  # noqa: E402
from cargohold.storage.lifecycle import ImageFacts  # noqa: E402
from cargohold.storage.schema import (  # noqa: E402
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    tags,
)
from cargohold.wire.lifecycle import parse_policy  # noqa: E402

MARK_BEGIN = "<!-- retention_bench begin -->"
MARK_END = "<!-- retention_bench end -->"
DAY_US = 86_400_000_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def open_storage(data_dir: Path) -> Storage:
    storage = Storage.from_settings(load_settings(data_dir=data_dir))
    storage.database.migrate()
    return storage


def seed_blobs(storage: Storage, total: int, per_manifest: int = 100) -> None:
    """`total` blobs (files of 32 bytes + rows), the first half referenced by manifests of one
    repository, the second half linked but unreferenced and older than any grace."""
    now = time.time_ns() // 1000
    old = now - 2 * 3600 * 1_000_000
    store = storage.blobs
    digests = []
    for index in range(total):
        data = index.to_bytes(8, "big") * 4
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = store.blob_path(digest)  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digests.append(digest)
    with storage.database.write() as conn:
        repo_id = conn.execute(insert(repositories).values(name="bench/gc", created_at=now)
                               .returning(repositories.c.id)).scalar_one()
        conn.execute(insert(blobs), [{"digest": d, "size": 32, "created_at": old}
                                     for d in digests])
        conn.execute(insert(repository_blobs), [{"repository_id": repo_id, "digest": d,
                                                 "linked_at": old} for d in digests])
        live = digests[: total // 2]
        for start in range(0, len(live), per_manifest):
            manifest_id = conn.execute(insert(manifests).values(
                repository_id=repo_id, digest=f"sha256:{start:064x}", media_type="x",
                size=2, content=b"{}", pushed_at=old).returning(manifests.c.id)).scalar_one()
            conn.execute(insert(tags).values(repository_id=repo_id, name=f"t{start}",
                                             manifest_id=manifest_id, updated_at=old))
            conn.execute(insert(manifest_references), [
                {"manifest_id": manifest_id, "kind": "blob", "digest": d}
                for d in live[start:start + per_manifest]])


def bench_gc(total: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="retention-bench-gc-") as tmp:
        storage = open_storage(Path(tmp) / "data")
        try:
            started = time.perf_counter()
            seed_blobs(storage, total)
            log(f"R1: seeded {total} blobs in {time.perf_counter() - started:.1f} s")
            collector = GarbageCollector(storage)
            started = time.perf_counter()
            dry = asyncio.run(collector.run(3600, dry_run=True))
            dry_s = time.perf_counter() - started
            started = time.perf_counter()
            real = asyncio.run(collector.run(3600))
            run_s = time.perf_counter() - started
            started = time.perf_counter()
            again = asyncio.run(collector.run(3600))
            again_s = time.perf_counter() - started
        finally:
            storage.close()
    return {"blobs": total, "garbage": real.blobs_deleted, "dry_run_s": round(dry_s, 2),
            "dry_run_found": dry.blobs_deleted, "run_s": round(run_s, 2),
            "bytes_reclaimed": real.bytes_reclaimed, "second_run_s": round(again_s, 2),
            "second_run_deleted": again.blobs_deleted}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def push_for(base: str, seconds: float, connections: int = 4) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * connections

    def worker(index: int) -> None:
        session = requests.Session()
        repo = f"bench/push{index}"
        while time.monotonic() < stop:
            nonce = os.urandom(16).hex()
            layer, config = os.urandom(1024), json.dumps({"nonce": nonce}).encode()
            descs = []
            for data, media in ((config, "application/vnd.oci.image.config.v1+json"),
                                (layer, "application/vnd.oci.image.layer.v1.tar")):
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                resp = session.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest}",
                                    data=data, timeout=60)
                resp.raise_for_status()
                descs.append({"mediaType": media, "digest": digest, "size": len(data)})
            body = json.dumps({"schemaVersion": 2,
                               "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": descs[0], "layers": descs[1:]}).encode()
            resp = session.put(f"{base}/v2/{repo}/manifests/{nonce[:16]}", data=body,
                               headers={"Content-Type":
                                        "application/vnd.oci.image.manifest.v1+json"},
                               timeout=60)
            resp.raise_for_status()
            counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def bench_push(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="retention-bench-push-") as tmp:
        data = Path(tmp) / "data"
        port = free_port()
        env = {**os.environ, "CARGOHOLD_GC_INTERVAL": "0"}
        server = subprocess.Popen(
            [sys.executable, "-m", "cargohold", "serve", "--anonymous", "--workers", "2",
             "--port", str(port), "--data-dir", str(data)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if requests.get(base + "/v2/", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.1)
            without = push_for(base, seconds)
            log(f"R2: {without:.1f} images/s without GC")
            storage = open_storage(data)
            collector = GarbageCollector(storage)
            stop = threading.Event()
            runs = [0]

            def collect() -> None:
                while not stop.is_set():
                    asyncio.run(collector.run(60))
                    runs[0] += 1

            gc_thread = threading.Thread(target=collect)
            gc_thread.start()
            try:
                with_gc = push_for(base, seconds)
            finally:
                stop.set()
                gc_thread.join()
                storage.close()
            log(f"R2: {with_gc:.1f} images/s with {runs[0]} collections")
        finally:
            server.terminate()
            server.wait(30)
    return {"seconds": seconds, "images_per_s_without_gc": round(without, 1),
            "images_per_s_with_gc": round(with_gc, 1), "collections_during_run": runs[0]}


POLICY = json.dumps({"rules": [
    {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPatternList": ["release-*"],
                                      "countType": "imageCountMoreThan", "countNumber": 500},
     "action": {"type": "expire"}},
    {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                      "countUnit": "days", "countNumber": 14},
     "action": {"type": "expire"}},
    {"rulePriority": 3, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                      "countNumber": 2000}, "action": {"type": "expire"}}]})


def bench_lifecycle(count: int) -> dict[str, Any]:
    rng = random.Random(1)
    now = time.time_ns() // 1000
    images = [ImageFacts(f"sha256:{i:064x}",
                         tuple(rng.sample([f"release-{i}", f"dev-{i}"], rng.randint(0, 2))),
                         now - rng.randint(0, 60) * DAY_US - DAY_US // 2, None)
              for i in range(count)]
    policy = parse_policy(POLICY)
    started = time.perf_counter()
    expired = evaluate(policy, images, now)
    evaluator_ms = (time.perf_counter() - started) * 1000
    with tempfile.TemporaryDirectory(prefix="retention-bench-lc-") as tmp:
        storage = open_storage(Path(tmp) / "data")
        try:
            with storage.database.write() as conn:
                repo_id = conn.execute(insert(repositories).values(
                    name="bench/lc", created_at=now).returning(repositories.c.id)).scalar_one()
                for image in images:
                    manifest_id = conn.execute(insert(manifests).values(
                        repository_id=repo_id, digest=image.digest, media_type="x", size=2,
                        content=b"{}", pushed_at=image.pushed_at).returning(manifests.c.id)
                    ).scalar_one()
                    for name in image.tags:
                        conn.execute(insert(tags).values(repository_id=repo_id, name=name,
                                                         manifest_id=manifest_id,
                                                         updated_at=now))
            service = LifecycleService(storage)
            started = time.perf_counter()
            previewed = asyncio.run(service.expiries("bench/lc", POLICY))
            preview_ms = (time.perf_counter() - started) * 1000
        finally:
            storage.close()
    return {"images": count, "expiring": len(expired), "evaluator_ms": round(evaluator_ms, 1),
            "preview_with_reads_ms": round(preview_ms, 1), "preview_expiring": len(previewed)}


def write_results(result: dict[str, Any]) -> None:
    gc, push, lc = result["gc"], result["push"], result["lifecycle"]
    rows = [
        (f"R1. GC of {gc['blobs']:,} blobs, half garbage: dry run (s)", gc["dry_run_s"]),
        (f"R1. … the run that deletes {gc['garbage']:,} blobs and their files (s)",
         gc["run_s"]),
        (f"R1. … a second run right after (s; deletes {gc['second_run_deleted']})",
         gc["second_run_s"]),
        ("R2. Small-image pushes, 4 connections, 2 workers, no GC (images/s)",
         push["images_per_s_without_gc"]),
        (f"R2. … with a collector running back to back ({push['collections_during_run']} "
         "runs) (images/s)", push["images_per_s_with_gc"]),
        (f"R3. Lifecycle evaluation, {lc['images']:,} images, 3 rules: the evaluator (ms)",
         lc["evaluator_ms"]),
        ("R3. … preview through the stores: read + evaluate (ms)",
         lc["preview_with_reads_ms"]),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    quick = " --quick" if result["quick"] else ""
    section = f"""{MARK_BEGIN}
## Retention (bench/retention_bench.py)

- Date: {result["date"]}; {result["machine"]}; load average before {result["load_before"]},
  after {result["load_after"]}. The machine was **shared with other developers' builds and
  tests and loaded** while this ran: read the figures as orders of magnitude.
- Command: `python bench/retention_bench.py{quick} --write-results`

| Metric | Cargohold |
|---|---:|
{table}

R2 runs the collector back to back in the benchmark process, on the same two cores as the
server and its load: a worst case. A server collects once per `gc_interval` (default 1 h).
{MARK_END}
"""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    if MARK_BEGIN in text:
        head, _, rest = text.partition(MARK_BEGIN)
        _, _, tail = rest.partition(MARK_END + "\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller, 3 s pushes")
    parser.add_argument("--write-results", action="store_true",
                        help="replace the retention section of bench/RESULTS.md")
    args = parser.parse_args()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, Linux {platform.release()}, "
                   f"Python {platform.python_version()}",
        "quick": args.quick, "load_before": load_before,
    }
    result["gc"] = bench_gc(10_000 if args.quick else 100_000)
    log(f"R1: {result['gc']}")
    result["push"] = bench_push(3 if args.quick else 10)
    result["lifecycle"] = bench_lifecycle(1_000 if args.quick else 10_000)
    log(f"R3: {result['lifecycle']}")
    result["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(json.dumps(result, indent=2))
    if args.write_results:
        write_results(result)


if __name__ == "__main__":
    main()
