"""A lean HTTP/1.1 client for the requests targets send: pooled keep-alive connections,
responses parsed by httptools, bodies handed over chunk by chunk.

aiohttp's client costs most of a target run's CPU time, and a scheduler sending a thousand
plain requests a second needs little of what it offers. This client does what a target
needs and nothing else: http and https (verified or not), a body of bytes, gzip and
deflate decoding with bounded inflation, chunked and length-delimited bodies and bodies
that end with the connection, redirects, connect timeouts, a DNS cache, a connection
limit. No proxies, cookies, HTTP/2 or `Expect: 100-continue`. A response to HEAD ends
with its headers: httptools cannot be told that it has no body (its Content-Length is the
GET's), so the exchange completes there and the next one gets a parser of its own.

Failures are raised as the exceptions of `errors`, which the runner's `classify_error`
(`cronmgr.runners.http.errors`) sorts into error classes and words for the attempt's record.
"""

from cronmgr.runners.http.wire.client import WireClient
from cronmgr.runners.http.wire.errors import (
    BodyBroken,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    HeadTooLarge,
    Malformed,
    ResolveFailed,
    TLSFailed,
    TooManyRedirects,
    UnsupportedURL,
    WireError,
)
from cronmgr.runners.http.wire.messages import OnHead, Reply, Request, Resolve, Sink

__all__ = [
    "BodyBroken",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "HeadTooLarge",
    "Malformed",
    "OnHead",
    "Reply",
    "Request",
    "Resolve",
    "ResolveFailed",
    "Sink",
    "TLSFailed",
    "TooManyRedirects",
    "UnsupportedURL",
    "WireClient",
    "WireError",
]
