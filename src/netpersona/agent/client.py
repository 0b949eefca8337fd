"""A client of the VM-facing metadata API (docs/metadata-api.md), as the agent needs it.

Session tokens are fetched, kept and renewed here (``PUT /v1/token``, as IMDSv2): a 401 gets a
fresh token and one retry. Every failure to get a well-formed answer, whether the service is
down, slow or answering garbage, becomes :class:`MetadataUnavailable`, so the caller has one
thing to handle: keep what it has and try again later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from netpersona.errors import MetadataUnavailable

__all__ = ["MetadataClient", "MetadataUnavailable", "Watched"]

# Header names, not secrets.
TOKEN_HEADER = "X-Netpersona-Token"  # noqa: S105
TOKEN_TTL_HEADER = "X-Netpersona-Token-TTL-Seconds"  # noqa: S105
TOKEN_TTL = 21600
# Renew a token this long before it expires, so a long-poll never starts with a dying token.
TOKEN_MARGIN = 300
JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Watched:
    """One answer of a watched path: the body, its ETag, and when the service said it."""

    body: JSON
    etag: str
    # The service's clock (its ``Date`` header, whole seconds), the clock certificates' ``iat``
    # is on; this VM's clock when the header is missing or unreadable.
    served_at: float = field(default_factory=time.time)


class MetadataClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport
        )
        self._token: str | None = None
        self._token_expires = 0.0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _token_header(self, *, renew: bool = False) -> dict[str, str]:
        if renew or self._token is None or time.monotonic() > self._token_expires - TOKEN_MARGIN:
            response = await self._send(
                "PUT", "/v1/token", headers={TOKEN_TTL_HEADER: str(TOKEN_TTL)}
            )
            if response.status_code != 200 or not response.text.strip():
                raise MetadataUnavailable(
                    f"PUT /v1/token answered {response.status_code}: {response.text[:200]}"
                )
            self._token = response.text.strip()
            self._token_expires = time.monotonic() + TOKEN_TTL
        assert self._token is not None
        return {TOKEN_HEADER: self._token}

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MetadataUnavailable(
                f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}"
            ) from None

    async def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A VM call with the session token; one retry with a new token on 401."""
        extra = {"timeout": timeout} if timeout is not None else {}
        headers = dict(kwargs.pop("headers", {}))
        for renew in (False, True):
            headers.update(await self._token_header(renew=renew))
            response = await self._send(method, path, headers=headers, **extra, **kwargs)
            if response.status_code != 401:
                return response
        return response

    async def get(
        self, path: str, *, last_etag: str | None = None, wait: float | None = None
    ) -> Watched:
        """GET a VM path; with ``wait``, long-poll until it differs from ``last_etag``."""
        params: dict[str, str] = {}
        timeout = None
        if wait is not None:
            params = {"wait_for_change": "true", "timeout_sec": str(max(1, int(wait)))}
            if last_etag:
                params["last_etag"] = last_etag
            timeout = wait + self.timeout
        response = await self._call("GET", path, params=params, timeout=timeout)
        if response.status_code != 200:
            raise MetadataUnavailable(
                f"GET {path} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            body = response.json()
        except ValueError:
            raise MetadataUnavailable(f"GET {path} answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise MetadataUnavailable(f"GET {path} answered JSON that is not an object")
        return Watched(body, response.headers.get("etag", ""), served_at(response))

    async def report(self, status: JSON) -> None:
        response = await self._call("POST", "/v1/instance/status", json=status)
        if response.status_code >= 300:
            raise MetadataUnavailable(
                f"POST /v1/instance/status answered {response.status_code}: {response.text[:200]}"
            )


def served_at(response: httpx.Response) -> float:
    """When the service answered, by its own clock (``Date``, RFC 9110 section 6.6.1)."""
    try:
        return parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return time.time()
