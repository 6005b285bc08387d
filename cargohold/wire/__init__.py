"""Wire types and validation: the one place that knows the OCI and ECR grammars and shapes."""
