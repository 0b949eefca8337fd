"""Prometheus metrics for the service, in a registry of its own (one per app instance): its
requests, watchers and changes, the process's (``process_*``) and ``netpersona_build_info``.

Labels are route templates and view kinds, never instance ids or addresses: ``/metrics`` is
readable without a token, and must not tell one VM anything about another.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from netpersona.build_info import add_build_info
from netpersona.service.views import ViewKind, WatchKey

__all__ = ["MetricsMiddleware", "ServiceMetrics"]


class ServiceMetrics:
    def __init__(self, waiting: Callable[[ViewKind], int]) -> None:
        self.registry = CollectorRegistry()
        # process_* (CPU, memory, open files against their limit, start time) from /proc.
        ProcessCollector(registry=self.registry)
        add_build_info(self.registry)
        self.requests = Counter(
            "netpersona_http_requests",
            "HTTP requests served, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "netpersona_http_request_duration_seconds",
            "Time to answer a request (long-poll requests are counted separately: watch=true)",
            ["route", "method", "watch"],
            registry=self.registry,
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
                300,
            ),
        )
        self.watchers = Gauge(
            "netpersona_watchers",
            "Long-poll requests waiting for a change, by view",
            ["view"],
            registry=self.registry,
        )
        for kind in ViewKind:
            self.watchers.labels(kind.value).set_function(_bind(waiting, kind))
        self.changes = Counter(
            "netpersona_changes",
            "Writes accepted, by kind of record",
            ["kind"],
            registry=self.registry,
        )
        self.wakeups = Counter(
            "netpersona_watch_wakeups",
            "Watched views woken by a change, by view",
            ["view"],
            registry=self.registry,
        )

    def woke(self, keys: set[WatchKey]) -> None:
        for kind, count in Tally(kind for kind, _ in keys).items():
            self.wakeups.labels(kind.value).inc(count)


def _bind(waiting: Callable[[ViewKind], int], kind: ViewKind) -> Callable[[], float]:
    return lambda: float(waiting(kind))


class MetricsMiddleware:
    """Counts and times every HTTP request by the route template it matched."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            watch = "true" if b"wait_for_change=true" in scope.get("query_string", b"") else "false"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method, watch).observe(
                time.perf_counter() - start
            )
