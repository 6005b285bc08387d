#!/usr/bin/env python3
"""Run bench/registry_bench.py against Cargohold and the CNCF reference registry, one at a time.

    python bench/compare.py [--quick] [--only ROWS]
                            [--cargohold-url URL [--cargohold-pid PID]
                             [--cargohold-aws-credentials FILE]]
                            [--reference-url URL [--reference-pid PID]]

Each server is started on a free 127.0.0.1 port with a fresh temporary data directory, benchmarked,
and stopped before the next one starts (so they never compete for CPU). Writes bench/results.json
(raw) and bench/RESULTS.md (one row per metric, Cargohold | reference registry).

The data directories are deleted only once every run is over, and the registries take turns
going first (round 1 the reference, round 2 Cargohold, ...). On a filesystem that delays the
reuse of deleted inodes (ext4 without a journal, as on the benchmark machines), each file
created within minutes of a large deletion nearby costs up to 20 times more CPU
(bench/PROFILE.md, session 9): deleting one registry's data, or running right after a
registry that deletes files as it works, would slow the next registry's writes.

Rows 1-8 and 11 run against an anonymous Cargohold (like the reference registry's config). The
rows that need credentials (SECURE_ROWS: the Bearer-token manifest GET and ECR DescribeImages) run
against a second, secure Cargohold, with the administrator's key from its data directory's
`admin-credentials`; the reference registry has neither token auth nor the ECR API, so those rows
say "n/a" there.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BENCH_SCRIPT = BENCH_DIR / "registry_bench.py"
REFERENCE_BIN = "/usr/bin/docker-registry"
START_TIMEOUT = 60.0
BENCH_TIMEOUT_FULL = 3600
BENCH_TIMEOUT_QUICK = 600
SECURE_ROWS = ("manifest_get_bearer", "describe_images")
# Set from the command line: Cargohold's --workers (None: its default) and the write rows' clients.
OPTIONS: dict[str, Any] = {"workers": None, "clients": None}
LEFTOVERS: list[Path] = []  # data directories, deleted once every run is over


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def v2_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v2/", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


class Server:
    """A registry subprocess in its own session, with its log in the temp dir."""

    def __init__(self, name: str, cmd: list[str], port: int, workdir: Path,
                 cwd: Path | None = None, env: dict[str, str] | None = None,
                 ready: tuple[int, ...] = (200,),
                 credentials: Path | None = None) -> None:
        self.name = name
        self.ready = ready
        self.credentials = credentials
        self.cmd = cmd
        self.port = port
        self.workdir = workdir
        self.cwd = cwd
        self.env = env
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def start(self) -> None:
        log(f"starting {self.name}: {shlex.join(self.cmd)}")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.cwd,
                                         env=self.env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        status: int | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            status = v2_status(self.url)
            if status in self.ready:
                log(f"{self.name} ready at {self.url} (pid {self.pid})")
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name}: GET /v2/ did not answer {self.ready} within "
                           f"{START_TIMEOUT}s "
                           f"(last answer: {status}):\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def reference_server(workdir: Path) -> Server:
    binary = shutil.which("docker-registry") or REFERENCE_BIN
    if not os.path.exists(binary):
        raise RuntimeError("docker-registry not installed (apt-get install -y docker-registry)")
    port = free_port()
    storage = workdir / "storage"
    storage.mkdir()
    config = workdir / "config.yml"
    # Close to Debian's /etc/docker/registry/config.yml, minus auth; access log off (the
    # accesslog is written regardless of log.level and would dominate small-request rows).
    config.write_text(f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
""")
    return Server("reference", [binary, "serve", str(config)], port, workdir)


def cargohold_server(workdir: Path, secure: bool = False) -> Server:
    port = free_port()
    data = workdir / ("data-secure" if secure else "data")
    data.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "cargohold", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--data-dir", str(data)]
    if OPTIONS["workers"]:
        cmd += ["--workers", str(OPTIONS["workers"])]
    if secure:
        # Credentials from the bootstrap administrator's AWS credentials file.
        env.pop("CARGOHOLD_ANONYMOUS", None)
        return Server("cargohold-secure", cmd, port, workdir, cwd=REPO_ROOT, env=env,
                      ready=(401,), credentials=data / "admin-credentials")
    # The benchmark is anonymous, like the reference registry's config: open Cargohold too.
    if "--anonymous" in cargohold_serve_help(env):
        cmd.append("--anonymous")
    else:
        env["CARGOHOLD_ANONYMOUS"] = "true"
    return Server("cargohold", cmd, port, workdir, cwd=REPO_ROOT, env=env)


def cargohold_serve_help(env: dict[str, str]) -> str:
    try:
        p = subprocess.run([sys.executable, "-m", "cargohold", "serve", "--help"],
                           capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env,
                           check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout


def run_bench(url: str, pid: int | None, quick: bool, only: str | None,
              credentials: Path | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH_SCRIPT), "--url", url]
    if pid is not None:
        cmd += ["--pid", str(pid)]
    if credentials is not None:
        cmd += ["--aws-credentials", str(credentials)]
    if quick:
        cmd.append("--quick")
    if OPTIONS["clients"]:
        cmd += ["--clients", str(OPTIONS["clients"])]
    if only:
        cmd += ["--only", only]
    load_before, probe_before = loadavg(), cpu_probe_ms()
    log(f"running {shlex.join(cmd)} (loadavg {load_before}, CPU probe {probe_before} ms)")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False,
                       timeout=BENCH_TIMEOUT_QUICK if quick else BENCH_TIMEOUT_FULL)
    if p.returncode != 0:
        raise RuntimeError(f"registry_bench exited with {p.returncode}")
    out = dict(json.loads(p.stdout))
    out["loadavg_before"] = load_before
    out["loadavg_after"] = loadavg()
    out["cpu_probe_ms_before"] = probe_before
    out["cpu_probe_ms_after"] = cpu_probe_ms()
    return out


def cpu_probe_ms(samples: int = 5) -> list[float]:
    """Milliseconds a fixed pure-Python loop takes, `samples` times: the same work each time,
    so the spread is the machine's own speed drift (shared hosts vary by tens of percent
    from one second to the next; bench/PROFILE.md, session 8)."""
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i
        times.append(round((time.perf_counter() - t0) * 1000, 1))
        time.sleep(0.05)
    return times


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def version_of(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else None


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(), "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wrk": version_of(["wrk", "-v"]) if shutil.which("wrk") else None,
        "reference_version": version_of([shutil.which("docker-registry") or REFERENCE_BIN,
                                         "--version"]),
    }


def bench_one(name: str, make: Any, url: str | None, pid: int | None, quick: bool,
              only: str | None, keep: bool, credentials: Path | None = None,
              make_secure: Any = None) -> dict[str, Any]:
    """Benchmark one registry. With `make_secure`, the SECURE_ROWS run against a second
    server that `make_secure` starts (with its own credentials file); the others against the
    first. Results are merged into one `bench` entry."""
    from registry_bench import parse_only

    if url:
        if v2_status(url) not in ((200, 401) if credentials else (200,)):
            return {"status": "not run", "reason": f"GET {url}/v2/ did not answer 200"}
        return {"status": "ok", "external": True,
                "bench": run_bench(url, pid, quick, only, credentials)}
    rows = parse_only(only)
    plain = [r for r in rows if make_secure is None or r not in SECURE_ROWS]
    secure = [r for r in rows if make_secure is not None and r in SECURE_ROWS]
    entry: dict[str, Any] = {"status": "ok"}
    for label, factory, selected in (("", make, plain), ("secure", make_secure, secure)):
        if not selected:
            continue
        part = _bench_server(name, label, factory, quick, ",".join(selected), keep)
        if part.get("status") != "ok":
            entry["status"] = part["status"]
            entry.setdefault("reason", part.get("reason"))
            if "log_tail" in part:
                entry["log_tail"] = part["log_tail"]
        if "command" in part:
            entry["secure_command" if label else "command"] = part["command"]
        if "bench" in part:
            if "bench" not in entry:
                entry["bench"] = part["bench"]
            else:
                entry["bench"]["rows"].update(part["bench"]["rows"])
                entry["bench"]["secure_url"] = part["bench"]["url"]
    if "bench" not in entry:
        entry["status"] = "not run"
    elif entry["status"] == "not run":
        entry["status"] = "partly run"
    return entry


def _bench_server(name: str, label: str, make: Any, quick: bool, only: str,
                  keep: bool) -> dict[str, Any]:
    suffix = f"-{label}" if label else ""
    workdir = Path(tempfile.mkdtemp(prefix=f"cargohold-bench-{name}{suffix}-"))
    server: Server | None = None
    try:
        server = make(workdir)
        server.start()
        result = run_bench(server.url, server.pid, quick, only, server.credentials)
        alive = server.proc is not None and server.proc.poll() is None
        return {"status": "ok" if alive else "server died", "command": shlex.join(server.cmd),
                "bench": result, **({} if alive else {"log_tail": server.log_tail()})}
    except Exception as exc:
        log(f"{name}{' ' + label if label else ''}: {exc}")
        return {"status": "not run", "reason": str(exc)[:2000]}
    finally:
        if server is not None:
            server.stop()
        if keep:
            log(f"kept {workdir}")
        else:
            LEFTOVERS.append(workdir)


# --------------------------------------------------------------------------- report


def fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def mib(n: int) -> str:
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):g} MiB"


def table_rows(sizes: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, row name, field) for each line of the table."""
    big = mib(sizes["big_blob"])
    return [
        (f"1. Monolithic push, {big} blob (MB/s, median of {sizes['push_reps']})",
         "push_monolithic", "value"),
        (f"2. Chunked push, {big} in {mib(sizes['chunk'])} PATCHes (MB/s, median of "
         f"{sizes['push_reps']})", "push_chunked", "value"),
        (f"3. Pull, {big} blob (MB/s, median of {sizes['pull_reps']})", "pull", "value"),
        (f"4. {sizes['concurrent_pulls']} concurrent pulls of the {big} blob (aggregate MB/s, "
         f"median of {sizes['concurrent_reps']})", "pull_concurrent", "value"),
        (f"5. Push {sizes['small_blobs']} small blobs "
         f"({sizes['small_min'] // 1024}-{sizes['small_max'] // 1024} KiB, "
         f"{sizes['small_concurrency']} connections) (blobs/s)", "push_small", "value"),
        (f"6. Manifest GET by tag, {sizes['manifest_connections']} connections, "
         f"{sizes['manifest_seconds']} s (requests/s)", "manifest_get", "value"),
        ("6. … latency p50 / p99", "manifest_get", "latency"),
        (f"7. Tag list, {sizes['tags']} tags, one full GET (ms, median of {sizes['list_reps']})",
         "tags_list", "full_ms"),
        (f"7. Tag list, {sizes['tags']} tags, paginated n={sizes['tag_page']} following Link "
         "(ms for all pages, median)", "tags_list", "paginated_ms"),
        ("7. … pages returned / server honours n", "tags_list", "pages"),
        (f"7. (setup) tagging rate, {sizes['tag_concurrency']} connections (tags/s)",
         "tags_list", "tagging_per_s"),
        ("8. Server RSS baseline (MiB, process tree)", "memory", "baseline_rss_mib"),
        (f"8. Server peak RSS while a {mib(sizes['memory_blob'])} blob is pushed then pulled "
         "(MiB)", "memory", "peak_rss_mib"),
        ("8. … peak during push / during pull (MiB)", "memory", "push_pull"),
        ("8. … peak PSS (MiB; shared pages counted once)", "memory", "peak_pss_mib"),
        (f"9. Manifest GET by tag with a Bearer token (secure server), "
         f"{sizes['manifest_connections']} connections, {sizes['manifest_seconds']} s "
         "(requests/s; compare row 6)", "manifest_get_bearer", "value"),
        ("9. … latency p50 / p99", "manifest_get_bearer", "latency"),
        (f"10. ECR DescribeImages over a repository of {sizes['ecr_images']:,} images: every "
         f"page, maxResults={sizes['ecr_page']} (ms for all pages, median of "
         f"{sizes['ecr_reps']})", "describe_images", "all_pages_ms"),
        (f"10. … one page of {sizes['ecr_page']}: the first / the last (ms, median)",
         "describe_images", "first_last"),
        (f"10. (setup) manifest PUT rate, {sizes['ecr_push_concurrency']} connections "
         "(manifests/s)", "describe_images", "push_per_s"),
        (f"11. Pull load: manifest and small blob GETs, "
         f"{sizes.get('pull_load_connections', 200)} connections, "
         f"{sizes.get('pull_load_seconds', 10)} s (requests/s)", "pull_load", "value"),
        ("11. … latency p50 / p99", "pull_load", "latency"),
        ("11. … non-2xx answers / socket errors and timeouts", "pull_load", "errors"),
        ("Server CPU per small blob pushed, row 5 (ms, utime+stime of the process tree)",
         "push_small", "server_cpu_ms_per_blob"),
        ("Server CPU per tag pushed, row 7 (ms)", "tags_list", "tagging_server_cpu_ms_per_tag"),
        (f"8. PSS per process after the {mib(sizes['memory_blob'])} push and pull (MiB; "
         "supervisor and workers)", "memory", "pss_per_process"),
    ]


def cell(entry: dict[str, Any], row: str, fld: str) -> str:
    if entry.get("status") == "not run":
        return "not run"
    rows = entry.get("bench", {}).get("rows", {})
    if row not in rows:
        return "-"
    r = rows[row]
    if "error" in r:
        return "error (see results.json)"
    if "skipped" in r:
        return "n/a" if str(r["skipped"]).startswith("n/a") else f"skipped ({r['skipped']})"
    if fld == "latency":
        return f"{r.get('latency_p50')} / {r.get('latency_p99')}"
    if fld == "pages":
        return f"{r.get('pages')} / {'yes' if r.get('server_honors_n') else 'no'}"
    if fld == "first_last":
        return f"{fmt(r.get('first_page_ms'), 2)} / {fmt(r.get('last_page_ms'), 2)}"
    if fld == "errors":
        return f"{r.get('non_2xx')} / {r.get('socket_errors')}"
    if fld == "pss_per_process":
        return " + ".join(fmt(x) for x in r.get("pss_per_process_mib") or []) or "-"
    if fld.startswith(("server_cpu", "tagging_server_cpu")):
        return fmt(r.get(fld), 2)
    if fld == "push_pull":
        return f"{fmt(r.get('peak_rss_push_mib'))} / {fmt(r.get('peak_rss_pull_mib'))}"
    if fld == "value" and row == "manifest_get" and r.get("non_2xx"):
        return f"{fmt(r.get('value'))} ({r['non_2xx']} non-2xx!)"
    return fmt(r.get(fld), 2 if fld.endswith("_ms") else 1)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    regs = results["registries"]
    sizes = next((e["bench"]["sizes"] for e in regs.values() if "bench" in e), None)
    if sizes is not None:
        sizes = {"ecr_images": 10_000, "ecr_page": 1000, "ecr_reps": 3,
                 "ecr_push_concurrency": 8, **sizes}  # results.json from before rows 9-10
    lines = [
        "# Cargohold vs. the CNCF reference registry",
        "",
        "Generated by `bench/compare.py` — do not edit by hand; see `bench/README.md` for what "
        "each row measures.",
        "",
        f"- Date: {m['date']}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"- Reference registry: {m['reference_version']}",
        f"- Load generator for row 6: {m['wrk'] or 'aiohttp (wrk not installed)'}",
        f"- Command: `{results['command']}`",
        f"- Mode: {'--quick (small sizes; not representative)' if results['quick'] else 'full'}",
        "",
    ]
    if sizes is None:
        lines += ["No registry could be benchmarked:", ""]
        for name, e in regs.items():
            lines.append(f"- {name}: {e.get('reason', e.get('status'))}")
        return "\n".join(lines) + "\n"
    lines += [
        "| Metric | Cargohold | reference registry |",
        "|---|---:|---:|",
    ]
    for label, row, fld in table_rows(sizes):
        if results.get("only_rows") and row not in results["only_rows"]:
            continue
        lines.append(f"| {label} | {cell(regs['cargohold'], row, fld)} | "
                     f"{cell(regs['reference'], row, fld)} |")
    lines += ["", "## Notes", ""]
    for name, title in (("cargohold", "Cargohold"), ("reference", "Reference registry")):
        e = regs[name]
        if e.get("status") == "not run":
            lines.append(f"- {title}: **not run** — {summary(e.get('reason', ''))}")
            continue
        if e.get("external"):
            lines.append(f"- {title}: already-running server at `{e['bench']['url']}`.")
        elif e.get("command"):
            lines.append(f"- {title} server command: `{e['command']}`")
        if e.get("secure_command"):
            lines.append(f"- {title} secure server (rows 9-10, the administrator's key from its "
                         f"`admin-credentials`): `{e['secure_command']}`")
        if "bench" in e:
            lines.append(f"- {title}: load average {e['bench'].get('loadavg_before')} before, "
                         f"{e['bench'].get('loadavg_after')} after its run (other processes "
                         "on the machine add noise).")
        if e.get("status") != "ok":
            lines.append(f"- {title}: {e['status']}")
        for row, r in e.get("bench", {}).get("rows", {}).items():
            if "error" in r:
                lines.append(f"- {title}, {row}: error: `{first_line(r['error'])}`")
            if row in ("manifest_get", "manifest_get_bearer") and "tool" in r:
                number = 6 if row == "manifest_get" else 9
                lines.append(f"- {title}, row {number} load generator: `{r['tool']}`; "
                             f"{r.get('requests')} requests, {r.get('non_2xx')} non-2xx, "
                             f"{r.get('socket_errors')} socket errors.")
            if "skipped" in r and str(r["skipped"]).startswith("n/a"):
                lines.append(f"- {title}, {row}: {r['skipped']}")
            if row == "tags_list" and "pages" in r and not r.get("server_honors_n", True):
                lines.append(f"- {title}: `tags/list?n={r['page_size']}` ignored `n` and "
                             f"returned all tags in {r['pages']} page(s).")
            if row == "tags_list" and r.get("full_in_order") is False:
                lines.append(f"- {title}: `tags/list` did not return the tags in lexical "
                             "order (the spec asks for lexical order).")
    if "command" in regs["reference"]:
        lines.append("- Reference registry config: filesystem storage in a temp dir, in-memory "
                     "blob descriptor cache, `storage.delete.enabled: true`, log level warn, "
                     "access log disabled.")
    if "command" in regs["cargohold"]:
        lines.append("- Cargohold runs with `--anonymous` (the benchmark, like the reference "
                     "config, uses no credentials) and its default settings otherwise.")
    lines += [
        "- Servers started here run one at a time on 127.0.0.1, each with a fresh data "
        "directory. Client and server share this machine's CPUs, so CPU-bound rows measure "
        "both.",
        "- MB = 10^6 bytes. RSS is summed over the server process and its children (forked "
        "workers' shared pages are counted in each, PSS counts them once).",
        "- Raw numbers, all samples: `bench/results.json`.",
    ]
    return "\n".join(lines) + "\n"


def summary(s: str) -> str:
    """First line, plus the last one when they differ (e.g. a traceback's exception)."""
    lines = [ln.strip() for ln in s.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … `{lines[-1]}`"
    return text[:400]


def first_line(s: str) -> str:
    return (s.strip().splitlines() or [""])[0][:300]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--only", help="rows to run (numbers 1-11 or names, comma-separated)")
    ap.add_argument("--cargohold-url", help="use an already-running Cargohold")
    ap.add_argument("--cargohold-pid", type=int, help="its PID (memory row)")
    ap.add_argument("--cargohold-aws-credentials", type=Path, metavar="FILE",
                    help="with --cargohold-url: an AWS credentials file for rows 9-10")
    ap.add_argument("--reference-url", help="use an already-running reference registry")
    ap.add_argument("--reference-pid", type=int, help="its PID (memory row)")
    ap.add_argument("--skip", choices=["cargohold", "reference"], action="append", default=[],
                    help="do not run this registry (its column says 'not run')")
    ap.add_argument("--keep", action="store_true", help="keep temp data dirs and logs")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR,
                    help="where RESULTS.md and results.json go (default: bench/)")
    ap.add_argument("--cargohold-workers", type=int, metavar="N",
                    help="Cargohold's --workers (default: none given, its own default)")
    ap.add_argument("--clients", type=int, default=16, metavar="N",
                    help="concurrent clients of the write rows 5 and 7 (default 16)")
    ap.add_argument("--rounds", type=int, default=2, metavar="N",
                    help="run both registries N times (default 2); RESULTS.md gets each "
                         "round's Cargohold/reference ratios")
    args = ap.parse_args(argv)
    OPTIONS.update(workers=args.cargohold_workers, clients=args.clients)

    sys.path.insert(0, str(BENCH_DIR))
    from registry_bench import parse_only  # validates --only early

    only_rows = parse_only(args.only) if args.only else None
    command = shlex.join(["python", os.path.relpath(__file__, REPO_ROOT), *sys.argv[1:]])
    results: dict[str, Any] = {
        "command": command, "quick": args.quick, "only_rows": only_rows,
        "machine": machine_info(), "registries": {},
    }
    plan = [
        ("reference", reference_server, args.reference_url, args.reference_pid, None, None),
        ("cargohold", cargohold_server, args.cargohold_url, args.cargohold_pid,
         args.cargohold_aws_credentials, functools.partial(cargohold_server, secure=True)),
    ]
    rounds: list[dict[str, Any]] = []
    try:
        for number in range(1, max(1, args.rounds) + 1):
            registries: dict[str, Any] = {}
            for name, make, url, pid, credentials, make_secure in (
                    plan if number % 2 else plan[::-1]):
                if name in args.skip:
                    registries[name] = {"status": "not run", "reason": "--skip " + name}
                    continue
                log(f"=== round {number}: {name}")
                registries[name] = bench_one(name, make, url, pid, args.quick, args.only,
                                             args.keep, credentials, make_secure)
            rounds.append(registries)
    finally:
        for workdir in LEFTOVERS:
            shutil.rmtree(workdir, ignore_errors=True)
    results["registries"] = rounds[0]
    results["rounds"] = rounds
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from rounds import keep_sections, render_ratios

    target = args.out_dir / "RESULTS.md"
    old = target.read_text() if target.exists() else ""
    report = render(results).replace("\n## Notes\n", "\n" + render_ratios(rounds)
                                     + "\n## Notes\n", 1)
    target.write_text(keep_sections(old, report))
    log(f"wrote {args.out_dir / 'RESULTS.md'} and {args.out_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
