"""The /v2 suites once more, through nginx over two nodes on PostgreSQL + SeaweedFS S3: every
request of a test may land on either node. All of them (base, discovery, manifests, referrers,
blobs, uploads): together with the ECR suite on a pair they add well under two minutes to a run
(measured: the two files took 1 min 43 s on the shared 2-core machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from multinode import node_pair
from ocihelpers import EXTERNAL
from test_api_base import *  # noqa: F403 - the suites, collected here against the pair
from test_api_blobs import *  # noqa: F403
from test_api_discovery import *  # noqa: F403
from test_api_manifests import *  # noqa: F403
from test_api_referrers import *  # noqa: F403
from test_api_uploads import *  # noqa: F403

pytestmark = pytest.mark.skipif(EXTERNAL, reason="drives its own pair of Cargohold nodes")


@pytest.fixture(scope="module")
def registry_url(seaweed_s3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx over the pair, in place of conftest's single server."""
    with node_pair(tmp_path_factory.mktemp("v2-pair"), seaweed_s3) as pair:
        yield pair.front.url
