"""Certificate Transparency log lists (Chrome's v3 schema) read from files, for what shows
and judges embedded SCTs: `acmekit check` / `certificates` and the fleet's CT compliance.
(The CA reads its own in acmekit.server.ctsubmit: the server does not import the client.)"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import merge_log_lists


def load_log_lists(paths: Sequence[str | Path]) -> ct.LogList:
    """Every log of the given lists, as one list; ValueError naming a file that does not
    read or parse."""
    found = []
    for path in paths:
        try:
            found.append(ct.LogList.loads(Path(path).read_bytes()))
        except (OSError, ct.CtError) as exc:
            raise ValueError(f"log list {path}: {exc}") from None
    return merge_log_lists(found)
