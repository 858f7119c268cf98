"""The mapping from a PoolConfig to requests, aiohttp and httpx objects, observed through their hooks."""
