"""Which netpersona this is: its version, and the ``netpersona_build_info`` metric that says it
(with the Python it runs on) to Prometheus, for the service and the agent alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["add_build_info", "package_version"]


def package_version() -> str:
    # Loaded here, not at import: importlib.metadata (email, zipfile, csv...) is a tenth of
    # what `netpersona validate` would otherwise import, for a line only --version prints.
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("netpersona")
    except PackageNotFoundError:  # running from a tree that was never installed
        return "unknown"


def add_build_info(registry: CollectorRegistry) -> None:
    """``netpersona_build_info{version=...,python=...} 1`` in ``registry``: a constant series,
    for joins (``* on(instance) group_left(version)``) and for spotting mixed versions."""
    from prometheus_client import Gauge  # noqa: PLC0415 (loaded only where metrics are on)

    info = Gauge(
        "netpersona_build_info",
        "The running netpersona: its version and Python's (always 1)",
        ["version", "python"],
        registry=registry,
    )
    import platform  # noqa: PLC0415

    info.labels(package_version(), platform.python_version()).set(1)
