"""Tandem: outcome and alliance monitoring for counselling clinics.

The `tandem` package holds what every layer shares: settings, warehouse access,
contract loading and the command line. Logic lives in `transforms/`, I/O in `flows/`.
"""

__version__ = "0.1.0"
