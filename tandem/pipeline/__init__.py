"""The use cases, free of Prefect: intake, reading sources, ingest, loaded answers,
aggregate, export and backup.

``flows/`` wraps these in Prefect flows and tasks; the command line and benchmarks call them
directly. Stands on ``tandem.core``, ``tandem.quality`` and ``transforms``.
"""
