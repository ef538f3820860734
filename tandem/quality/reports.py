"""The quality team's report: one HTML page (and the JSON result) per batch, and an index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;font-size:14px}th{background:#f3f3f3}.ok{color:#17663a}.bad{color:#a01c1c}"
)


def _page(title: str, body: str) -> str:
    from html import escape

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def write_batch_report(directory: Path, batch_id: int, clinic_id: str, source_name: str,
                       result_json: dict[str, Any], summary: dict[str, Any]) -> Path:
    """Keep a batch's GX result as JSON and as a readable HTML page (Data Docs' role).

    GX's own Data Docs need a file-backed context and re-render every page on each build;
    a page per batch written once, from the kept result, stays fast on a back-fill of
    thousands of files and never holds client ids (the result has no row values).
    """
    from html import escape

    directory.mkdir(parents=True, exist_ok=True)
    stem = f"batch-{batch_id:08d}"
    (directory / f"{stem}.json").write_text(
        # compact (one line; ``python -m json.tool`` shows it indented): one per batch
        json.dumps({"batch": summary, "validation": result_json}, default=str,
                   separators=(",", ":")),
        encoding="utf-8")
    rows = []
    for res in result_json.get("results", []):
        cfg = res.get("expectation_config") or {}
        r = res.get("result") or {}
        kw = {k: v for k, v in (cfg.get("kwargs") or {}).items()
              if k not in ("batch_id", "condition_parser")}
        cls = "ok" if res.get("success") else "bad"
        rows.append(
            f"<tr><td>{escape(str((cfg.get('meta') or {}).get('rule', '')))}</td>"
            f"<td>{escape(str(cfg.get('type', '')))}</td>"
            f"<td><code>{escape(json.dumps(kw, default=str)[:300])}</code></td>"
            f"<td class='{cls}'>{'passed' if res.get('success') else 'failed'}</td>"
            f"<td>{r.get('element_count', '')}</td><td>{r.get('unexpected_count', '')}</td></tr>")
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                    for k, v in summary.items())
    body = (f"<p><a href='index.html'>all batches</a></p><h1>Batch {batch_id}: "
            f"{escape(source_name)}</h1><p>clinic {escape(clinic_id)}</p><table>{facts}</table>"
            "<h2>Data-contract rules (Great Expectations)</h2><table><tr><th>rule</th>"
            "<th>expectation</th><th>arguments</th><th>outcome</th><th>rows checked</th>"
            "<th>rows failing</th></tr>" + "".join(rows) + "</table>"
            "<p>Failing rows, with their reasons, are in the <code>quarantine</code> table "
            "(batch_id = " + str(batch_id) + ").</p>")
    path = directory / f"{stem}.html"
    path.write_text(_page(f"Batch {batch_id}", body), encoding="utf-8")
    return path


def build_report_index(directory: Path) -> Path:
    """``index.html`` over every kept batch report (newest first): the page to link to."""
    from html import escape

    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(directory.glob("batch-*.json"), reverse=True):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        b = doc.get("batch") or {}
        ok = (doc.get("validation") or {}).get("success")
        rows.append(
            f"<tr><td><a href='{path.stem}.html'>{b.get('batch_id', '')}</a></td>"
            f"<td>{escape(str(b.get('clinic_id', '')))}</td>"
            f"<td>{escape(str(b.get('source_name', '')))}</td>"
            f"<td class='{'ok' if ok else 'bad'}'>"
            f"{'all rules passed' if ok else 'rows failed'}</td>"
            f"<td>{b.get('rows_received', '')}</td><td>{b.get('rows_loaded', '')}</td>"
            f"<td>{b.get('rows_quarantined', '')}</td><td>{b.get('rows_duplicate', '')}</td></tr>")
    body = ("<h1>Tandem data-contract validation</h1><table><tr><th>batch</th><th>clinic</th>"
            "<th>file</th><th>outcome</th><th>received</th><th>loaded</th><th>quarantined</th>"
            "<th>duplicates</th></tr>" + "".join(rows) + "</table>")
    index = directory / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(_page("Tandem validation", body), encoding="utf-8")
    tmp.replace(index)
    return index


def validation_report_path(settings: Any = None) -> Path:
    """The report's entry page (built if missing): what the dashboard links to."""
    from tandem.core.settings import get_settings

    settings = settings or get_settings()
    index = settings.validation_dir / "index.html"
    if not index.exists():
        build_report_index(settings.validation_dir)
    return index
