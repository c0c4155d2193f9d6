"""One loader for the published test vectors stored beside the tests (pyca style)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTOR_DIR = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> list[dict[str, Any]]:
    """The `vectors` list of `vectors/<name>.json`, with the file's top-level keys merged in."""
    document = json.loads((VECTOR_DIR / f"{name}.json").read_text())
    shared = {k: v for k, v in document.items() if k != "vectors"}
    return [{**shared, **vector} for vector in document["vectors"]]
