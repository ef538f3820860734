"""The ground floor: settings, runtime environment, contracts, warehouse and published-data
access, received files, pseudonyms and fault points.

Everything else stands on it; it imports only the standard library and third-party
packages, never another floor of Tandem (the layering contract in ``pyproject.toml``).
"""
