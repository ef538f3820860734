"""Which files in a folder are deliveries, and why the others are skipped.

``tandem ingest FOLDER`` reads every delivery under the folder. A folder may also hold
files that are not deliveries (a generated data set's contracts, manifest and truth; a
README; a spreadsheet's lock file) and entries that are not files at all (symbolic links,
named pipes, devices). Those are skipped with a reason a person can act on, never read,
and never silently dropped. A file named on its own is always tried (it then loads or
fails alone with its reason), except a link or a special file, which is never opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tandem.core.safe_files import FileRefused, list_files, refusal

# What clinic exports are called: canonical and REDCap CSV, FHIR NDJSON (or one JSON
# resource or Bundle), Excel workbooks.
DELIVERY_SUFFIXES = (".csv", ".tsv", ".txt", ".ndjson", ".jsonl", ".json", ".xlsx", ".xlsm")
_KNOWN = {
    ".yaml": "a YAML file (a clinic contract?), not a delivery; clinic contracts are read "
             "from TANDEM_HOME/data_contracts/clinics/",
    ".yml": "a YAML file (a clinic contract?), not a delivery; clinic contracts are read "
            "from TANDEM_HOME/data_contracts/clinics/",
    ".parquet": "a Parquet file (the generator's ground truth?), not a delivery",
    ".md": "a text document (a README?), not a delivery",
    ".rst": "a text document (a README?), not a delivery",
    ".html": "a web page (a report?), not a delivery",
    ".pdf": "a PDF document, not a delivery",
    ".xls": "an old-format Excel file (.xls): open it in Excel and save it as .xlsx",
    ".zip": "a zip archive: unpack it and ingest the files inside",
}
_NAMES = {
    "manifest.json": "the generator's ground-truth manifest, not a delivery",
    "readme": "a text document (a README), not a delivery",
}


def not_a_delivery(path: Path) -> str | None:
    """Why a file found in a folder is not a delivery (by its name), or None."""
    name = path.name.lower()
    if name in _NAMES:
        return _NAMES[name]
    if name.startswith("~$"):
        return "a spreadsheet's lock file (the workbook is open in Excel), not a delivery"
    if name.startswith("readme"):
        return _NAMES["readme"]
    suffix = path.suffix.lower()
    if suffix in _KNOWN:
        return _KNOWN[suffix]
    if suffix not in DELIVERY_SUFFIXES:
        return (f"not a delivery ({suffix or 'no extension'}); Tandem reads "
                f"{', '.join(DELIVERY_SUFFIXES)} files")
    return None


@dataclass
class Expanded:
    """The deliveries to ingest, in order, and every path skipped with its reason."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def expand(paths: list[Path]) -> Expanded:
    """Files as given; folders expanded to the deliveries under them, in name order.

    A path that does not exist raises :class:`FileNotFoundError`."""
    out = Expanded()
    for p in paths:
        why = refusal(p)
        if why == "does not exist":
            raise FileNotFoundError(p)
        if why == "is a folder, not a file":
            try:
                listing = list_files(p)
            except FileRefused as exc:
                out.skipped.append((p, exc.reason))
                continue
            for f in listing.files:
                reason = not_a_delivery(f)
                if reason:
                    out.skipped.append((f, reason))
                else:
                    out.files.append(f)
            out.skipped.extend((r.path, r.reason) for r in listing.refused)
        elif why is not None:  # a link (even to a file) or a special file: never opened
            out.skipped.append((p, why + (
                "; name the file it points to instead" if "symbolic link" in why else "")))
        else:
            out.files.append(p)
    return out
