"""A client of the VM-facing metadata API (docs/metadata-api.md), as the agent needs it.

Session tokens are fetched, kept and renewed here (``PUT /v1/token``, as IMDSv2): a 401 gets a
fresh token and one retry. Every failure to get a well-formed answer, whether the service is
down, slow or answering garbage, becomes :class:`MetadataUnavailable` (or its
:class:`MalformedAnswer`), so the caller has one thing to handle: keep what it has and try
again later.

Replicas: the client is given one or more base URLs, in order of preference. A request that
gets no answer from one (refused, reset, cut off, past its deadline) or a 5xx is sent at once to
the next, and the one that answered is used from then on (a connection closed before any
answer is first tried once more on the same replica: a kept-alive connection the server closed
as the request went out is no sign of a dead replica); after :data:`FAILBACK` seconds away
from the first, the next request tries the first again (docs/deployment.md). A session token
from one replica is good at every other (they share its secret through the database).
Replicas follow each other's writes within milliseconds, not at once, so every view GET
carries ``min_revision``, the highest ``X-Netpersona-Revision`` any answer has had: a replica
that has not heard of that write yet catches up before it answers, and the agent does not go
back to an older persona because it changed replica.

Whatever the service does, one request costs bounded memory and time: the body is streamed and
dropped past its cap (:data:`ANSWER_LIMIT`, or what the caller allows, e.g. the peer view's
:data:`PEER_VIEW_LIMIT`), its JSON nesting is checked before parsing, and the whole exchange has
a deadline (the long-poll's wait plus :data:`DEADLINE_MARGIN`) on top of httpx's per-read
timeouts, which a drip of one byte every few seconds never trips.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httpx
import structlog

from netpersona.agent.answers import decode_json, parse_revision, parse_token
from netpersona.errors import MalformedAnswer, MetadataUnavailable
from netpersona.model.jsontree import JSON

__all__ = [
    "ANSWER_LIMIT",
    "FAILBACK",
    "PEER_VIEW_LIMIT",
    "MalformedAnswer",
    "MetadataClient",
    "MetadataUnavailable",
    "Watched",
]

# Header names, not secrets.
TOKEN_HEADER = "X-Netpersona-Token"  # noqa: S105
TOKEN_TTL_HEADER = "X-Netpersona-Token-TTL-Seconds"  # noqa: S105
REVISION_HEADER = "X-Netpersona-Revision"
TOKEN_TTL = 21600
# Renew a token this long before it expires, so a long-poll never starts with a dying token.
TOKEN_MARGIN = 300
# The most the agent reads of one answer. A peer view lists a whole fleet (about 200 bytes a
# peer), the rest are one record each.
ANSWER_LIMIT = 1 << 20
PEER_VIEW_LIMIT = 64 << 20
# How much longer than its long-poll wait one request may take, from connect to last byte.
DEADLINE_MARGIN = 30.0
# How much of a refused body goes into an error message.
EXCERPT = 200
MAX_ETAG_LENGTH = 256
# Seconds on a fallback replica before the first one is tried again.
FAILBACK = 300.0

log = structlog.get_logger("netpersona.agent")


@dataclass(frozen=True, slots=True)
class Watched:
    """One answer of a watched path: the body, its ETag, and when the service said it."""

    body: JSON
    etag: str
    # The service's clock (its ``Date`` header, whole seconds), the clock certificates' ``iat``
    # is on; this VM's clock when the header is missing or unreadable.
    served_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def excerpt(self) -> str:
        return self.body[:EXCERPT].decode("utf-8", "replace")


async def _read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    """The body, or MalformedAnswer as soon as it passes ``limit`` (the rest is never read)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise MalformedAnswer(f"{what}: an answer of {declared} bytes (at most {limit})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise MalformedAnswer(f"{what}: an answer of more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _tls(urls: Sequence[str]) -> ssl.SSLContext | bool:
    """Verify https with the system's CAs. Plain-http services only (the link-local metadata
    address) get a context that trusts nothing instead of the default one, whose CA bundle
    is 7 MB resident for as long as the agent runs and would never be used: a redirect to
    https (never followed anyway) could not verify."""
    if any(url.lower().startswith("https:") for url in urls):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class _NoAnswer(Exception):
    """This replica gave no usable answer; the next may."""

    def __init__(self, error: MetadataUnavailable) -> None:
        self.error = error


class MetadataClient:
    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        timeout: float = 10.0,
        deadline_margin: float = DEADLINE_MARGIN,
        transport: httpx.AsyncBaseTransport | None = None,
        failback: float = FAILBACK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("MetadataClient: no base URL")
        self.urls = tuple(url.rstrip("/") for url in urls)
        self.timeout = timeout
        self.deadline_margin = deadline_margin
        self.failback = failback
        self.clock = clock
        self.current = 0  # index of the replica in use
        self._moved_at = 0.0  # when it moved off the first
        self._client = httpx.AsyncClient(
            timeout=timeout, transport=transport, verify=_tls(self.urls)
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self.revision: int | None = None  # the highest revision an answer has had

    @property
    def base_url(self) -> str:
        """The replica in use."""
        return self.urls[self.current]

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _token_header(self, *, renew: bool = False) -> dict[str, str]:
        if renew or self._token is None or time.monotonic() > self._token_expires - TOKEN_MARGIN:
            self._token = None
            answer = await self._send(
                "PUT", "/v1/token", headers={TOKEN_TTL_HEADER: str(TOKEN_TTL)}
            )
            if answer.status != 200:
                raise MetadataUnavailable(
                    f"PUT /v1/token answered {answer.status}: {answer.excerpt()}"
                )
            self._token = parse_token(answer.body)
            self._token_expires = time.monotonic() + TOKEN_TTL
        return {TOKEN_HEADER: self._token}

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        body: JSON | None = None,
        wait: float = 0.0,
        limit: int = ANSWER_LIMIT,
    ) -> _Answer:
        """The first usable answer, asking the replicas in turn from the one in use."""
        if self.current and self.clock() - self._moved_at >= self.failback:
            log.info("trying the first metadata service again", url=self.urls[0])
            self.current = 0
        start = self.current
        failures: list[MetadataUnavailable] = []
        for step in range(len(self.urls)):
            index = (start + step) % len(self.urls)
            try:
                answer = await self._send_to(
                    self.urls[index], method, path, headers, params, body, wait, limit
                )
            except _NoAnswer as no:
                failures.append(no.error)
                if len(self.urls) > 1:
                    log.warning(
                        "metadata service failed", url=self.urls[index], error=str(no.error)
                    )
                continue
            if index != self.current:
                log.warning("metadata service failed over", url=self.urls[index], was=self.base_url)
                self.current = index
                self._moved_at = self.clock()
            return answer
        if len(failures) == 1:
            raise failures[0]
        raise MetadataUnavailable(
            f"no metadata service answered ({len(failures)} tried): "
            + "; ".join(str(f) for f in failures)
        )

    async def _send_to(
        self,
        base: str,
        method: str,
        path: str,
        headers: dict[str, str],
        params: dict[str, str] | None,
        body: JSON | None,
        wait: float,
        limit: int,
    ) -> _Answer:
        what = f"{method} {path}"
        deadline = wait + self.deadline_margin
        timeout = httpx.Timeout(self.timeout, read=wait + self.timeout)
        try:
            async with asyncio.timeout(deadline):
                request = self._client.build_request(
                    method, base + path, headers=headers, params=params, json=body, timeout=timeout
                )
                try:
                    response = await self._client.send(request, stream=True)
                except httpx.RemoteProtocolError:
                    # Closed without a word: most often a kept-alive connection the server
                    # timed out just as this request went out. Once more, on a new
                    # connection, before the replica counts as failed.
                    response = await self._client.send(request, stream=True)
                try:
                    content = await _read_capped(response, limit, what)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise _NoAnswer(
                MetadataUnavailable(f"{what} ({base}): no complete answer within {deadline:g}s")
            ) from None
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise _NoAnswer(
                MetadataUnavailable(f"{what} ({base}): {type(exc).__name__}: {exc}")
            ) from None
        answer = _Answer(response.status_code, response.headers, content)
        if answer.status >= 500 and len(self.urls) > 1:
            # A replica that cannot serve (its database away, stopping): another may.
            raise _NoAnswer(
                MetadataUnavailable(f"{what} ({base}) answered {answer.status}: {answer.excerpt()}")
            )
        return answer

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: JSON | None = None,
        wait: float = 0.0,
        limit: int = ANSWER_LIMIT,
    ) -> _Answer:
        """A VM call with the session token; one retry with a new token on 401."""
        for renew in (False, True):
            headers = await self._token_header(renew=renew)
            answer = await self._send(
                method, path, headers=headers, params=params, body=body, wait=wait, limit=limit
            )
            if answer.status != 401:
                return answer
        return answer

    async def get(
        self,
        path: str,
        *,
        last_etag: str | None = None,
        wait: float | None = None,
        limit: int = ANSWER_LIMIT,
    ) -> Watched:
        """GET a VM path; with ``wait``, long-poll until it differs from ``last_etag``."""
        params: dict[str, str] = {}
        if wait is not None:
            params = {"wait_for_change": "true", "timeout_sec": str(max(1, int(wait)))}
            if last_etag:
                params["last_etag"] = last_etag
        if self.revision is not None:
            params["min_revision"] = str(self.revision)
        answer = await self._call("GET", path, params=params, wait=wait or 0.0, limit=limit)
        if answer.status != 200:
            raise MetadataUnavailable(f"GET {path} answered {answer.status}: {answer.excerpt()}")
        body = decode_json(answer.body, f"GET {path}")
        etag = answer.headers.get("etag", "")
        if len(etag) > MAX_ETAG_LENGTH or not etag.isascii():
            raise MalformedAnswer(f"GET {path}: an ETag that is not one: {etag[:40]!r}")
        revision = parse_revision(answer.headers.get(REVISION_HEADER))
        if revision is not None and (self.revision is None or revision > self.revision):
            self.revision = revision
        return Watched(body, etag, served_at(answer.headers))

    async def report(self, status: JSON) -> None:
        answer = await self._call("POST", "/v1/instance/status", body=status)
        if answer.status >= 300:
            raise MetadataUnavailable(
                f"POST /v1/instance/status answered {answer.status}: {answer.excerpt()}"
            )


def served_at(headers: httpx.Headers) -> float:
    """When the service answered, by its own clock (``Date``, RFC 9110 section 6.6.1)."""
    try:
        return parsedate_to_datetime(headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return time.time()
