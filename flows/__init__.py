"""Prefect flows: the I/O and orchestration around the pure transforms."""
