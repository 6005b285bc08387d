"""What a worker process holds before its first request: botocore (7 MiB a process, for the
ECR API's model and SigV4) is imported on the first ECR request, not when the app is built;
issue 12 budgets 100 MiB a worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BUILD_APP = """
import json, pathlib, sys
from cargohold.config import Settings
from cargohold.http.app import create_app
create_app(Settings(data_dir=pathlib.Path(sys.argv[1])))
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_after_building_the_app(data_dir: Path) -> set[str]:
    done = subprocess.run([sys.executable, "-c", BUILD_APP, str(data_dir)], check=True,
                          capture_output=True, text=True, timeout=120)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_building_the_app_leaves_botocore_for_the_first_ecr_request(tmp_path: Path) -> None:
    loaded = loaded_after_building_the_app(tmp_path)
    assert "aiohttp" in loaded  # the probe sees the app's imports
    assert "botocore" not in loaded


def test_the_ecr_model_still_loads_on_demand() -> None:
    """The model, imported where it is used, still validates: a good request passes, a
    malformed one is refused as ECR refuses it (the signer is exercised by the ECR API tests,
    whose clients sign every request)."""
    from cargohold.wire.ecr import EcrError, operation, validate_request

    validate_request(operation("DescribeRepositories"), {"maxResults": 10})
    with pytest.raises(EcrError) as refused:
        validate_request(operation("DescribeRepositories"), {"maxResults": "ten"})
    assert refused.value.name == "InvalidParameterException"
