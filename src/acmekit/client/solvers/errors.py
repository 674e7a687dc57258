"""What the solvers raise: one base class, so a caller can report any solver failure.
Every one is this side's failure (a `ClientError`), never the CA's verdict.

SolverError
├── WebrootError        no webroot for a name, or the challenge file cannot be written
├── HookError           a hook command exited non-zero (names the hook and its status)
├── DnsUpdateError      a DNS provider could not add or remove a TXT record
├── PropagationError    TXT records not seen on the authoritative servers in time
├── PortUnavailable     a standalone responder cannot listen on its address and port
└── NoManualAuth        the manual solver has neither an auth hook nor a prompt
"""

from __future__ import annotations

from acmekit.client.errors import ClientError


class SolverError(ClientError):
    """A challenge could not be presented or cleaned up."""


class WebrootError(SolverError):
    pass


class HookError(SolverError):
    def __init__(self, hook: str, status: int, detail: str = "") -> None:
        message = f"{hook} exited with status {status}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.hook = hook
        self.status = status


class DnsUpdateError(SolverError):
    pass


class PortUnavailable(SolverError):
    """The `kind` (http-01, tls-alpn-01) responder cannot listen on `address`:`port`."""

    def __init__(self, kind: str, address: str, port: int, cause: OSError) -> None:
        shown = f"[{address}]" if ":" in address else (address or "*")
        reason = cause.strerror or str(cause)
        super().__init__(f"the {kind} responder cannot listen on {shown}:{port}: {reason}")
        self.kind = kind
        self.address = address
        self.port = port
        self.errno = cause.errno


class NoManualAuth(SolverError, ValueError):
    def __init__(self) -> None:
        super().__init__("the manual solver needs an auth hook or a prompt")


class PropagationError(SolverError):
    def __init__(self, missing: list[str], timeout: float) -> None:
        super().__init__(
            f"TXT records not visible on the authoritative servers after {timeout:g} s: "
            + ", ".join(missing)
        )
        self.missing = missing
