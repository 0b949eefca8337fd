"""The one chokepoint for running external commands (nft, tc, ip, iperf3).

Everything that starts a process goes through :func:`run`, so a failure always names the
command, its exit code and what it wrote to stderr, and tests can forbid processes in one
place (``tests/conftest.py``) unless a test is marked ``subprocess`` or ``kernel``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from netpersona.errors import CommandFailed, KernelError

__all__ = ["in_netns", "run"]

DEFAULT_TIMEOUT = 60.0


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never through a shell) and return what it printed.

    Raises :class:`CommandFailed` on a non-zero exit when ``check`` is true, and
    :class:`KernelError` when the program is missing or does not finish within ``timeout``.
    """
    try:
        done = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise KernelError(f"{argv[0]} is not installed (needed for: {' '.join(argv)})") from None
    except subprocess.TimeoutExpired:
        raise KernelError(f"{' '.join(argv)} did not finish within {timeout:g}s") from None
    if check and done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr or done.stdout)
    return done


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside the named network namespace (``ip netns exec``), or as is."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
