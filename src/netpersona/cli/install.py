"""What the command line knows about how it was installed: its version, and which extra a
command needs.

The base install is what a VM runs (the CLI, compiler, applier and agent); the metadata service
and what only it imports come with ``netpersona[service]``. A command that needs the extra
imports it when it runs, so a missing package is met there and said in one line.
"""

from __future__ import annotations

import sys

from netpersona.build_info import package_version

__all__ = ["SERVICE_HINT", "exit_if_extra_missing", "package_version"]

# Top-level modules that only ``netpersona[service]`` installs (pyproject.toml).
SERVICE_MODULES = frozenset(
    {
        *("fastapi", "starlette", "uvicorn", "httptools", "uvloop"),
        *("jinja2", "swagger_ui_bundle", "multipart", "python_multipart", "psycopg"),
    }
)
SERVICE_HINT = "pip install 'netpersona[service]'"


def exit_if_extra_missing(exc: ModuleNotFoundError) -> None:
    """Exit 2 with one error line (code ``usage_error``, as docs/cli.md lists) when ``exc`` is a
    package of the service extra; else return."""
    top = (exc.name or "").partition(".")[0]
    if top not in SERVICE_MODULES:
        return
    sys.stderr.write(
        f"error (usage_error) this command needs the metadata service's packages ({top} is not"
        " installed):"
        f" {SERVICE_HINT}\n"
    )
    sys.exit(2)
