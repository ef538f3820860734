"""Data contracts at work: rules compiled from the YAML contracts, the Great Expectations
run, each file's outcome, the reasons a row was set aside, and the reports quality teams read.

Stands on ``tandem.core`` and ``transforms``; free of Prefect.
"""
