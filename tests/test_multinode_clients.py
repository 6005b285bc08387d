"""Real clients against two nodes behind nginx (round-robin, so consecutive requests of one
push land on different nodes), on PostgreSQL + SeaweedFS: skopeo copying in and out, and the
ECR walkthrough (the `aws` CLI, skopeo login with an ECR password, oras pushing a Helm chart and
an OPA bundle). The test functions are the single-node suites' own, run once more here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from ecrhelpers import SKIP_EXTERNAL, Ecr, ecr_client
from multinode import node_pair
from test_clients_skopeo import (  # noqa: F401 - collected here once more, against the pair
    pushed,
    test_copy_back_to_oci_layout_is_byte_identical,
    test_copy_between_repositories,
    test_delete,
    test_push_multiarch_stores_exact_content,
)
from test_ecr_walkthrough import (  # noqa: F401 - collected here once more, against the pair
    test_aws_cli_errors_and_pagination,
    test_ecr_walkthrough,
)

pytestmark = [pytest.mark.clients, SKIP_EXTERNAL]


@pytest.fixture(scope="module")
def registry_url(seaweed_s3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The open pair's nginx, in place of conftest's single server."""
    with node_pair(tmp_path_factory.mktemp("open-pair"), seaweed_s3) as pair:
        yield pair.front.url


@pytest.fixture(scope="module")
def ecr(seaweed_s3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecr]:
    """The secure pair's nginx, in place of the walkthrough's single server."""
    with node_pair(tmp_path_factory.mktemp("secure-pair"), seaweed_s3,
                   anonymous=False) as pair:
        key_id, secret = pair.front.admin_credentials
        http = requests.Session()
        http.auth = (key_id, secret)
        yield Ecr(pair.front, key_id, secret,  # type: ignore[arg-type] - quacks alike
                  ecr_client(pair.front.url, key_id, secret), http)
