"""The async ACME client library: transport, protocol channel, order flow, solvers."""

from acmekit.client.channel import AcmeChannel
from acmekit.client.client import (
    Client,
    ExternalAccountBinding,
    as_identifier,
    choose_challenge,
    describe_failures,
    select_chain,
)
from acmekit.client.resources import (
    Account,
    Authorization,
    Challenge,
    Directory,
    IssuedCertificate,
    Order,
)
from acmekit.client.retry import Backoff, DeadlineExceeded, parse_retry_after, poll
from acmekit.client.transport import (
    AiohttpTransport,
    AsgiTransport,
    HttpResponse,
    HttpTransport,
    TransportError,
)
from acmekit.clock import Clock, SystemClock

__all__ = [
    "Account",
    "AcmeChannel",
    "AiohttpTransport",
    "AsgiTransport",
    "Authorization",
    "Backoff",
    "Challenge",
    "Client",
    "Clock",
    "DeadlineExceeded",
    "Directory",
    "ExternalAccountBinding",
    "HttpResponse",
    "HttpTransport",
    "IssuedCertificate",
    "Order",
    "SystemClock",
    "TransportError",
    "as_identifier",
    "choose_challenge",
    "describe_failures",
    "parse_retry_after",
    "poll",
    "select_chain",
]
