"""What the client raises: the CA's verdict, or this side's own failure.

An `AcmeError` (from `acmekit.protocol.problems`) carries a problem document the server
sent (RFC 8555 §6.7), or one built from what the server reported (a failed
authorization's challenge errors, an order's `error`): the CA said so. Everything this
side found or decided is a `ClientError`, so a caller can tell the two apart:

    ClientError
    ├── TransportError        no HTTP answer: refused, TLS failure, timeout (transport.py)
    ├── RootsError            the PEM roots to trust cannot be read (transport.py)
    ├── ServerProtocolError   an answer that breaks RFC 8555: no nonce, no Location, not
    │                         JSON, an error status without a problem document
    ├── DeadlineExceeded      still in progress when polling ran out of time (retry.py)
    ├── NoAccount             a request needs an account: register first
    ├── NoUsableChallenge     the server offers no challenge type we can solve
    ├── OrderNotValid         an order ended neither valid nor with an error
    └── SolverError           a challenge could not be presented or cleaned up (solvers/)

The certbot application adds its own (lineages, accounts on disk, locks) under the
same base.
"""

from __future__ import annotations


class ClientError(Exception):
    """A failure found or decided on this side; never the CA's verdict."""


class ServerProtocolError(ClientError):
    """The server answered, but not as RFC 8555 says it must."""

    def __init__(
        self, detail: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


class NoAccount(ClientError):
    """A request needs the account's URL (§6.2 `kid`), and there is none yet."""


class NoUsableChallenge(ClientError):
    """None of the challenge types the server offers for a name has a solver here."""

    def __init__(self, identifier: str, offered: list[str], solvable: list[str]) -> None:
        super().__init__(f"{identifier}: server offers {offered}, we can solve {solvable}")
        self.identifier = identifier


class OrderNotValid(ClientError):
    """The order ended in a status other than valid and the server gave no error."""

    def __init__(self, url: str, status: str) -> None:
        super().__init__(f"order {url} ended {status}")
        self.url = url
        self.status = status
