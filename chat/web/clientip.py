"""Who the client is: the one place that decides the address every limit, log line and the
/metrics loopback rule go by.

Behind a reverse proxy every connection comes from the proxy, so per-IP limits would count the
whole site as one client. The proxy says who it forwards for in `X-Forwarded-For` (each hop
appends the address it was connected from) or `X-Real-IP`, but anyone can send those headers:
they are believed only from the peers in TRUSTED_PROXIES, and read from the right, skipping
trusted hops, so a client cannot pick its own address by prefixing a forged one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Sequence
from typing import TypeAlias

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDictProxy

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# The address the connection's peer forwarded for, kept on the original request too, so the
# access log (which is handed the original, not the middleware's copy) names the same client.
CLIENT = web.RequestKey("chat.client", str)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None, headers: CIMultiDictProxy[str], proxies: Sequence[Network]
) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the rightmost
    address in X-Forwarded-For that is not itself a trusted proxy (X-Real-IP when there is no
    X-Forwarded-For). An unparsable hop ends the walk at the last address that was sound."""
    if peer is None or not proxies:
        return peer
    current = _address(peer)
    if current is None or not _trusted(current, proxies):
        return peer
    hops = [hop for value in headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    if not hops:
        hops = list(headers.getall("X-Real-IP", ()))[-1:]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, proxies):
            break
    return str(current)


def real_client(proxies: Sequence[Network]) -> Middleware:
    """Middleware (the first): from a trusted proxy, the handlers see the forwarded client as
    `request.remote`. A plain function, as in chat.web.middlewares: no frame kept per socket."""

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        client = client_address(request.remote, request.headers, proxies)
        if client is None or client == request.remote:
            return handler(request)
        request[CLIENT] = client
        return handler(request.clone(remote=client))

    return middleware
