from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.helpers import generate_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Generated clinic files (canonical CSV, REDCap, FHIR NDJSON, Excel) and contracts."""
    return generate_corpus(tmp_path_factory.mktemp("corpus"))
