"""The ratio table of `compare.py --rounds N` (Cargohold / reference, per round, against the
targets of issue 12), and keeping the sections other bench scripts wrote into RESULTS.md.

Each round benchmarks the reference registry, then Cargohold, so every ratio compares two
servers measured minutes apart on the same (shared, noisy) machine; the load average of each
run, and how long a fixed CPU loop took before and after it, are shown next to them.
"""

from __future__ import annotations

import re
from typing import Any

# (label, row, field, target ratio or None, higher_is_better)
RATIO_ROWS: list[tuple[str, str, str, float | None, bool]] = [
    ("monolithic push (MB/s)", "push_monolithic", "value", 2.5, True),
    ("chunked push (MB/s)", "push_chunked", "value", 2.5, True),
    ("pull, 1 stream (MB/s)", "pull", "value", 1.0, True),
    ("pull, concurrent streams (MB/s)", "pull_concurrent", "value", 1.0, True),
    ("small blobs pushed (blobs/s)", "push_small", "value", 3.0, True),
    ("tags pushed, manifest PUTs (tags/s)", "tags_list", "tagging_per_s", 3.0, True),
    ("manifest GET, 64 connections (req/s)", "manifest_get", "value", 5.0, True),
    ("manifest GET p99 (ms)", "manifest_get", "latency_p99", None, False),
    ("server CPU per small blob (ms)", "push_small", "server_cpu_ms_per_blob", None, False),
    ("server CPU per tag PUT (ms)", "tags_list", "tagging_server_cpu_ms_per_tag", None, False),
    ("200-connection pull load (req/s)", "pull_load", "value", None, True),
    ("200-connection pull load p99 (ms; target ≤ 100 ms, 0 errors)", "pull_load",
     "latency_p99", None, False),
    ("peak RSS, 1 GiB push+pull (MiB, whole tree)", "memory", "peak_rss_mib", None, False),
    ("peak PSS, 1 GiB push+pull (MiB, whole tree)", "memory", "peak_pss_mib", None, False),
]

# Sections other scripts own: `<!-- NAME begin -->`/`start` … `<!-- NAME end -->`.
_SECTION = re.compile(r"<!-- (?P<name>[\w-]+)[ :](?:begin|start) -->.*?<!-- (?P=name)[ :]end -->",
                      re.S)


def _number(value: Any) -> float | None:
    """A row's number; latencies come as '12.3ms' strings."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = re.match(r"\s*([0-9.]+)\s*(ms|s|us|µs)?", value)
        if match:
            factor = {"s": 1000.0, "us": 0.001, "µs": 0.001}.get(match.group(2) or "ms", 1.0)
            return float(match.group(1)) * factor
    return None


def _value(entry: dict[str, Any], row: str, field: str) -> float | None:
    rows = entry.get("bench", {}).get("rows", {})
    return _number(rows.get(row, {}).get(field))


def render_ratios(rounds: list[dict[str, Any]]) -> str:
    """A markdown section: per row, each round's Cargohold and reference figures, the ratio
    (>1: Cargohold better, whatever the unit) and whether the target is met."""
    head = "| row | target | " + " | ".join(
        f"round {i + 1}: Cargohold / reference = ratio" for i in range(len(rounds))) + " |"
    lines = ["## Ratios per round (Cargohold at its defaults vs. the reference registry)", "",
             "Ratio > 1 means Cargohold is better (faster, or lower latency/memory).", "",
             head, "|---|---|" + "---|" * len(rounds)]
    for label, row, field, target, higher in RATIO_ROWS:
        cells = []
        for regs in rounds:
            ours = _value(regs.get("cargohold", {}), row, field)
            ref = _value(regs.get("reference", {}), row, field)
            if ours is None or ref is None or ours == 0 or ref == 0:
                cells.append(f"{ours if ours is not None else '-'} / "
                             f"{ref if ref is not None else '-'}")
                continue
            ratio = ours / ref if higher else ref / ours
            met = "" if target is None else (" ✓" if ratio >= target else " ✗")
            cells.append(f"{ours:,.1f} / {ref:,.1f} = **{ratio:.2f}x**{met}")
        goal = f"≥ {target:g}x" if target is not None else "-"
        lines.append(f"| {label} | {goal} | " + " | ".join(cells) + " |")
    loads, probes = [], []
    for i, regs in enumerate(rounds):
        for name in ("reference", "cargohold"):
            bench = regs.get(name, {}).get("bench", {})
            if bench:
                loads.append(f"round {i + 1} {name}: {bench.get('loadavg_before')} → "
                             f"{bench.get('loadavg_after')}")
            if bench.get("cpu_probe_ms_before"):
                probes.append(f"round {i + 1} {name}: {_spread(bench['cpu_probe_ms_before'])} → "
                              f"{_spread(bench.get('cpu_probe_ms_after') or [])}")
    lines += ["", "Load average (1/5/15 min) before → after each run: " + "; ".join(loads) + "."]
    if probes:
        lines += ["", "The same fixed CPU loop, timed 5 times before and 5 times after each run, "
                  "fastest-slowest before → after (ms; on a shared machine the spread is its "
                  "speed drift, which every row's figure carries): " + "; ".join(probes) + "."]
    for i, regs in enumerate(rounds):
        for name in ("cargohold", "reference"):
            load = regs.get(name, {}).get("bench", {}).get("rows", {}).get("pull_load")
            if load and "error" not in load:
                lines.append(f"- Round {i + 1}, {name}, 200-connection pull load: p99 "
                             f"{load.get('latency_p99')}, {load.get('non_2xx')} non-2xx, "
                             f"{load.get('socket_errors')} socket errors or timeouts "
                             "(issue 12: p99 ≤ 100 ms, 0 errors).")
    return "\n".join(lines) + "\n"


def keep_sections(old: str, new: str) -> str:
    """`new` (compare.py's own part, which ends with its "## Notes" list), followed by what
    other scripts or people added to `old` after compare.py's part: every later `## ` section,
    marked or not, in its order. Without such a part in `old`, its marked sections."""
    notes = old.find("\n## Notes\n")
    if notes >= 0:
        after = re.search(r"\n(?=## |<!-- )", old[notes + len("\n## Notes\n"):])
        tail = old[notes + len("\n## Notes\n") + after.end():] if after else ""
    else:
        tail = "\n\n".join(m.group(0) for m in _SECTION.finditer(old))
    if not tail.strip():
        return new
    return new.rstrip("\n") + "\n\n" + tail.strip("\n") + "\n"


def _spread(times: list[float]) -> str:
    return f"{min(times):g}-{max(times):g}" if times else "?"
