"""Retention: garbage collection, lifecycle policies and fsck."""
