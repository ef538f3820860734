"""The ground-truth manifest: options, seed, true effects, files and every injected fault.

Written by streaming the per-clinic fault lists, so a run of any size writes it in
bounded memory. Tests and benchmarks read it to score the pipeline (docs/generator.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

MANIFEST_VERSION = 1


def write_manifest(path: Path, head: dict, fault_files: Iterable[Path]) -> int:
    """Write ``head`` plus a ``faults`` list read line by line; returns the fault count."""
    n = 0
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        body = json.dumps(head, indent=1, ensure_ascii=False)
        out.write(body[:-2] + ',\n "faults": [')
        for fp in fault_files:
            with fp.open(encoding="utf-8") as fh:
                for line in fh:
                    out.write(("\n  " if n == 0 else ",\n  ") + line.rstrip("\n"))
                    n += 1
        out.write("\n ]\n}\n")
    tmp.replace(path)
    return n


def read_manifest(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)
