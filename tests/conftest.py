"""Fixtures shared by every test folder: the throwaway PostgreSQL cluster (tests/pg.py)."""

from pg import own_pg_cluster, pg_cluster, pg_url

__all__ = ["own_pg_cluster", "pg_cluster", "pg_url"]
