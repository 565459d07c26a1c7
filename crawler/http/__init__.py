"""crawler.http: the per-host connection pool (filled in by the pool work)."""
