"""The ECR-compatible management API: AWS JSON 1.1 over `POST /`, SigV4-signed."""
