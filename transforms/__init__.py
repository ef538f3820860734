"""Outcome, alliance and practice analytics as pure Polars functions.

Every module is named after a concept of the domain (see docs/outcomes.md). Functions take
frames in and give frames out: no I/O, no settings, no Prefect. ``marts.build_marts`` is the
single entry point the ``aggregate`` flow calls.
"""
