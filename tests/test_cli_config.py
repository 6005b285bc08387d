"""A bad configuration is refused by every command with one clear message: no traceback, no
data directory created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port


@pytest.mark.parametrize(("text", "message"), [
    ('workers = "x"\n', "workers"),
    ("port = \n", "invalid configuration file"),
    ("no_such_setting = 1\n", "no_such_setting"),
    ('gc_grace = "ten minutes"\n', "gc_grace"),
    # The S3 read-ahead knobs are bounded: no part below 256 KiB, 1-64 parts in flight.
    ("[blob_store]\nread_window = 0\n", "read_window"),
    ("[blob_store]\nread_part_size = 1024\n", "read_part_size"),
    ("[blob_store]\nread_parallel_below = -1\n", "read_parallel_below"),
    ("[blob_store]\nread_budget = -1\n", "read_budget"),
])
def test_bad_configuration_is_one_clear_message(tmp_path: Path, text: str,
                                                message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    for args in (["serve", "--port", str(free_port())], ["gc", "--dry-run"]):
        result = subprocess.run(
            [sys.executable, "-m", "cargohold", *args, "--config", str(config),
             "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "data").exists()
