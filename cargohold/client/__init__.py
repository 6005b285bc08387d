"""A client for any OCI Distribution registry: the library behind `cargohold push/pull/...`.

Everything here talks the OCI Distribution Specification (plus the Docker token-auth flow and,
for `images`, an ECR-compatible API where a registry offers one), so it works against Cargohold,
the CNCF reference registry, zot, ECR and the rest alike.
"""

from cargohold.client.errors import ClientError
from cargohold.client.reference import Reference, parse_reference

__all__ = ["ClientError", "Reference", "parse_reference"]
