"""The lab's operator: the admin API over the service's local Unix socket.

The lab's namespaces have no route to the host's (by design), so the lab talks to the service
through ``netpersona serve --admin-socket PATH``: a Unix socket is a file, reachable from any
network namespace, and it is mode 0600.
"""

from __future__ import annotations

from typing import Any

import httpx

from netpersona.errors import NetpersonaError

__all__ = ["AdminClient"]


class AdminClient:
    def __init__(self, socket_path: str, token: str) -> None:
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=socket_path),
            base_url="http://netpersona",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise NetpersonaError(f"{method} {path}: the service did not answer ({exc})") from None
        if response.status_code >= 400:
            raise NetpersonaError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None
