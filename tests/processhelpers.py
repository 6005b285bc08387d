"""Looking at a test server from outside: its process tree, threads and open descriptors, and
waiting for a condition to hold."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def eventually(check: Callable[[], object], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


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
