"""One writer per source format; each lays out files as docs/formats.md describes."""

from tandem.synth.writers.base import ClinicWriter
from tandem.synth.writers.canonical import CanonicalWriter
from tandem.synth.writers.excel import ExcelWriter
from tandem.synth.writers.fhir import FhirWriter
from tandem.synth.writers.redcap import RedcapWriter

WRITERS: dict[str, type[ClinicWriter]] = {
    "canonical_csv": CanonicalWriter,
    "redcap_csv": RedcapWriter,
    "fhir_ndjson": FhirWriter,
    "excel": ExcelWriter,
}

__all__ = ["WRITERS", "ClinicWriter"]
