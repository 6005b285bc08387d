"""Upstream registries: the pull-through cache (rules, client, cache)."""
