"""Regenerate the README's feature table from the registry: ``python -m stockml_core.features.readme``.

The table sits between ``<!-- feature-table:start -->`` and ``<!-- feature-table:end -->``; a test
fails when it is stale, so the README never drifts from the code (``make docs`` runs this).
"""

import sys
from pathlib import Path

from stockml_core.features.registry import FEATURE_REGISTRY, markdown_table

START, END = "<!-- feature-table:start -->", "<!-- feature-table:end -->"


def render(readme: str) -> str:
    """``readme`` with the generated table between the markers (ValueError if they are missing)."""
    if START not in readme or END not in readme:
        raise ValueError(f"README lacks the markers {START} ... {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


def main(path: str = "README.md") -> int:
    file = Path(path)
    old = file.read_text()
    new = render(old)
    if new != old:
        file.write_text(new)
    print(f"{file}: feature table with {len(FEATURE_REGISTRY)} features {'updated' if new != old else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
