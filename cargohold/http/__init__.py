"""HTTP layer: the `/v2` distribution API and operational endpoints, on aiohttp."""
