"""The OCI Distribution v1.1 API under `/v2`."""
