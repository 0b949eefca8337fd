"""A client of the metadata service's admin API, raising the error tree instead of returning
error bodies.

Shared by ``netpersona admin`` (over TCP) and the lab (over the service's admin Unix socket, via
an ``httpx.HTTPTransport(uds=...)``); it imports neither the CLI framework nor the web server.
"""

from __future__ import annotations

from typing import Any

import httpx

from netpersona.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidDocument,
    NetpersonaError,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    UsageError,
)

__all__ = ["AdminClient"]

_ERRORS: dict[int, type[NetpersonaError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    400: UsageError,
}


class AdminClient:
    """The admin API over HTTP, raising the error tree instead of returning error bodies."""

    def __init__(self, url: str, token: str, transport: httpx.BaseTransport | None = None):
        if not url:
            raise UsageError("--url (or NETPERSONA_URL) is required, e.g. http://10.0.0.1:8080")
        if not token:
            raise UsageError("--token (or NETPERSONA_TOKEN) is required")
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
            transport=transport,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise NetpersonaError(f"cannot reach {self.url}{path}: {exc}") from None
        if response.status_code == 204:
            return None
        if response.is_success:
            return response.json()
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"message": response.text or response.reason_phrase}
        message = f"{method} {path}: {error.get('message', '')}"
        if response.status_code == 422:
            raise InvalidDocument(
                [FieldError(e["pointer"], e["message"]) for e in error.get("errors", [])]
                or [FieldError("", message)]
            )
        raise _ERRORS.get(response.status_code, NetpersonaError)(message)

    def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.request(
                "GET", path, params={**params, "cursor": cursor} if cursor else params
            )
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    def close(self) -> None:
        self._http.close()
