"""The `--state FILE` of the DNS server: records and registrations as one JSON document.

Written whole on every change, atomically: a temporary file in the same directory is
written, flushed to disk and renamed over the old one (`os.replace`), so a crash leaves
either the old state or the new one, never half of each. Mode 0600: the file holds
password hashes of registrations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acmekit.files import atomic_write

STATE_VERSION = 1


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved document, or None if there is no file yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a state file: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
        raise ValueError(f"{path} is not a state file of this version")
    return doc


def save_state(path: Path, doc: dict[str, Any]) -> None:
    """Replace `path` with `doc` atomically."""
    data = json.dumps({**doc, "version": STATE_VERSION}, indent=1, sort_keys=True)
    atomic_write(path, data.encode(), 0o600)
