"""The ECR API suite once more, through nginx over two secure nodes on PostgreSQL + SeaweedFS
S3. Opt-in (CARGOHOLD_TEST_MULTINODE_FULL=1; about two minutes): CI covers the ECR API on the
pair through the walkthrough (test_multinode_clients.py) and the layer-part test
(test_multinode.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
from ecrhelpers import SKIP_EXTERNAL, Ecr, ecr_client
from multinode import node_pair

if os.environ.get("CARGOHOLD_TEST_MULTINODE_FULL"):
    from test_ecr_api import *  # noqa: F403 - the suite, collected here against the pair

    # Not for a pair: these create users with the `cargohold admin` CLI on a node's data
    # directory (the helper clears CARGOHOLD_*, so the CLI opens that directory's SQLite, not
    # the pair's PostgreSQL) ...
    del test_repository_policy_is_enforced  # noqa: F821
    del test_describe_repositories_shows_only_visible  # noqa: F821
    del test_describe_repositories_by_name_honours_a_deny  # noqa: F821
    del test_describe_repositories_by_name_with_a_repository_scoped_allow  # noqa: F821
    # ... and on S3, GetDownloadUrlForLayer answers with the store's presigned URL by design
    # (checked in test_multinode.py), not a URL of the registry.
    del test_get_download_url_for_layer  # noqa: F821

pytestmark = SKIP_EXTERNAL


@pytest.fixture(scope="module")
def ecr(seaweed_s3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    """The secure pair's nginx, in place of the suite's single server."""
    with node_pair(tmp_path_factory.mktemp("ecr-pair"), seaweed_s3, anonymous=False) as pair:
        key_id, secret = pair.front.admin_credentials
        http = requests.Session()
        http.auth = (key_id, secret)
        yield Ecr(pair.front, key_id, secret,  # type: ignore[arg-type] - quacks alike
                  ecr_client(pair.front.url, key_id, secret), http)
