"""Looking at a test server from outside: its process tree, threads and open descriptors, and
waiting for a condition to hold."""

from __future__ import annotations

import functools
import os

from clihelpers import wait_for

# Wait up to 20 s for a condition: clihelpers.wait_for's loop.
eventually = functools.partial(wait_for, timeout=20)


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == pid:
                pids.extend(process_tree(int(entry)))
    return pids


def threads_and_fds(pid: int) -> tuple[int, int]:
    """Threads and open descriptors of the process `pid` and its descendants."""
    threads = fds = 0
    for member in process_tree(pid):
        threads += len(os.listdir(f"/proc/{member}/task"))
        fds += len(os.listdir(f"/proc/{member}/fd"))
    return threads, fds
