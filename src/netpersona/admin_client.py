"""A client of the metadata service's admin API, raising the error tree instead of returning
error bodies.

Shared by ``netpersona admin`` (over TCP, or over the service's admin Unix socket with
``--admin-socket``) and the lab (over that socket, via an ``httpx.HTTPTransport(uds=...)``); it
imports neither the CLI framework nor the web server. The service asks for a bearer token on the
socket as on TCP (the socket's 0600 mode decides who may connect, the token what they may do).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from netpersona.errors import FieldError, InvalidDocument, NetpersonaError, UsageError

__all__ = ["AdminClient", "error_from_answer"]


def _by_code() -> dict[str, type[NetpersonaError]]:
    """Every code in the errors tree, to the most general class that has it and can be made
    from a message (``command_failed`` comes back as a ``KernelError``, same exit code)."""
    found: dict[str, type[NetpersonaError]] = {}
    pending: list[tuple[type[NetpersonaError], type[NetpersonaError]]] = [
        (NetpersonaError, NetpersonaError)
    ]
    while pending:
        cls, usable = pending.pop(0)
        if cls is InvalidDocument or "__init__" not in vars(cls):
            usable = cls
        found.setdefault(cls.code, usable)
        pending.extend((sub, usable) for sub in cls.__subclasses__())
    return found


_BY_CODE = _by_code()


def error_from_answer(context: str, status: int, body: str) -> NetpersonaError:
    """The error an API error answer stands for, found by its ``code`` (the one mapping from
    the API back to the errors tree); ``context`` (e.g. ``PUT /v1/admin/personas/db``) leads
    the message."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
        fields = [FieldError(e["pointer"], e["message"]) for e in error.get("errors", [])]
    except (ValueError, KeyError, TypeError):
        return NetpersonaError(f"{context}: the service answered {status}: {body[:200]}")
    cls = _BY_CODE.get(code, NetpersonaError)
    if cls is InvalidDocument:
        return InvalidDocument(fields or [FieldError("", f"{context}: {message}")])
    return cls(f"{context}: {message}")


class AdminClient:
    """The admin API over HTTP, raising the error tree instead of returning error bodies."""

    def __init__(
        self,
        url: str,
        token: str,
        transport: httpx.BaseTransport | None = None,
        *,
        socket: Path | None = None,
    ):
        if not url and socket is None:
            raise UsageError(
                "--url (or NETPERSONA_URL) is required, e.g. http://10.0.0.1:8080, or"
                " --admin-socket (or NETPERSONA_ADMIN_SOCKET)"
            )
        if not token:
            raise UsageError(
                "--token or --token-file (or NETPERSONA_TOKEN, NETPERSONA_TOKEN_FILE) is required"
            )
        if socket is not None:
            # The host part is not used on a Unix socket; the request line still needs one.
            url = "http://localhost"
            transport = httpx.HTTPTransport(uds=str(socket))
        self.url = url.rstrip("/")
        self.socket = socket
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
            where = f"{self.url}{path}" if self.socket is None else f"{self.socket} ({path})"
            raise NetpersonaError(f"cannot reach {where}: {exc}") from None
        if response.status_code == 204:
            return None
        if response.is_success:
            return response.json()
        raise error_from_answer(f"{method} {path}", response.status_code, response.text)

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
