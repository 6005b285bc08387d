"""Helpers of the retention tests: run the admin CLI against a data directory, measure the
blob store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def cargohold(*args: str, env: dict[str, str] | None = None,
              check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    import os

    result = subprocess.run([sys.executable, "-m", "cargohold", *args], capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    return result


def run_gc(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = cargohold("gc", "--data-dir", str(data_dir), "--output", "json", *extra, env=env)
    return json.loads(out.stdout)


def blob_files(data_dir: Path) -> dict[str, int]:
    """digest -> size of every blob file in the data directory's filesystem store."""
    return store_files(data_dir / "blobs")


def store_files(store_root: Path) -> dict[str, int]:
    """digest -> size of every blob file in a filesystem store rooted at `store_root`."""
    root = store_root / "blobs"
    found = {}
    for path in root.glob("*/*/*"):
        if path.is_file():
            found[f"{path.parent.parent.name}:{path.name}"] = path.stat().st_size
    return found
