"""Tandem: outcome and alliance monitoring for counselling clinics.

The package's floors, lowest first (each may import only those below it; the layering
contract in ``pyproject.toml`` keeps it so):

- ``tandem.core``: settings, runtime environment, contracts, warehouse and published data;
- ``transforms`` (a top-level package): pure Polars, frame in, frame out;
- ``tandem.quality``: data-contract rules, the Great Expectations run, reasons, reports;
- ``tandem.pipeline``: the Prefect-free use cases (ingest, aggregate, intake, export, backup);
- ``flows`` and ``dashboards`` (top-level): Prefect wrappers; the read-only Streamlit app;
- ``tandem.app``: the command line, ``tandem serve`` and its processes.

``tandem.synth`` (the data generator) stands on ``tandem.core`` alone.
"""

__version__ = "0.2.0"
