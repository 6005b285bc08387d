"""Cargohold: a self-hostable OCI registry with an ECR-compatible management API."""

__version__ = "0.1.0"
