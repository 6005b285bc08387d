"""The ECR API suite once more, through nginx over two secure nodes on PostgreSQL + SeaweedFS
S3. The `cargohold admin` commands the suite runs (users, policies) run with node A's settings,
on the pair's PostgreSQL, as an operator on that host would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from ecrhelpers import SKIP_EXTERNAL, Ecr, ecr_client
from multinode import node_pair
from test_ecr_api import *  # noqa: F403 - the suite, collected here against the pair

# Not for S3 rather than not for a pair: GetDownloadUrlForLayer answers with the store's own
# presigned URL whenever the blobs are in S3 (as ECR does), while this test checks a URL of the
# registry and its signature rules; the S3 answer is checked in test_multinode.py
# (test_ecr_layer_parts_alternate_between_nodes).
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
