"""Write docs/marts.md from the mart contracts (``data_contracts/marts/*.yaml``).

    python -m tandem.app.marts_doc [PATH]          # default: docs/marts.md (from the cwd)
    python -m tandem.app.marts_doc --check [PATH]  # exit 1 when PATH is not up to date

The page is generated: edit a contract, then run this. tests/core/test_mart_contracts.py fails
when the committed page differs from what the contracts give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tandem.core.contracts import load_mart_contracts, render_markdown

DEFAULT_PATH = Path("docs") / "marts.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tandem.app.marts_doc",
                                     description="Generate docs/marts.md from the mart contracts.")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH,
                        help="the page to write (default: docs/marts.md)")
    parser.add_argument("--check", action="store_true",
                        help="only compare: exit 1 when the page is not up to date")
    args = parser.parse_args(argv)
    text = render_markdown(load_mart_contracts())
    path: Path = args.path
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if args.check:
        if current != text:
            print(f"{path} is not up to date: run python -m tandem.app.marts_doc {path}",
                  file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    if current == text:
        print(f"{path} is up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
