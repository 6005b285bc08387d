"""OCI wire types and validation: the one place that knows the spec's grammar and media types."""
