"""nftables commands run in this process through libnftables, or by the ``nft`` program.

``nft`` is a thin front end of libnftables (libnftables(3)): the library parses a command
(text or JSON), talks netlink to the kernel and prints the answer. Starting the program for
each command costs a fork and an exec of a 1 MB binary (3-10 ms on a busy host) where the
command itself takes a few hundred microseconds, so the kernel seam calls the library
directly when it can be loaded, through ctypes:

* one context (``nft_ctx_new``) per network namespace, kept for the life of the process; its
  cache of the ruleset is refreshed by the library itself when the kernel's generation moves;
* output and errors buffered (``nft_ctx_buffer_output`` / ``nft_ctx_buffer_error``), so what
  a command prints comes back as text, exactly as ``nft`` would write it to stdout/stderr;
* ``nft_ctx_output_set_flags`` chooses JSON output per command (``nft -j``), and
  ``nft_ctx_set_dry_run`` a checked, never committed, batch (``nft --check``).

A context's netlink socket belongs to the namespace the context was made in (setns(2) moves
only the calling thread). For another namespace, the context is made and every command runs
in one worker thread that joined that namespace when it started, so this process never
leaves its own and a library that opens its socket lazily still talks to the right kernel.

:class:`NftProgram` is the same interface over the ``nft`` program (``ip netns exec`` for
another namespace), used when the library is not installed. Both report a failed command the
same way: the command as ``nft`` would be run, exit status 1 and the library's error text.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from netpersona.dataplane.netlink import setns_net
from netpersona.dataplane.nft_elements import NETLINK_NETFILTER, lookup_elements
from netpersona.errors import KernelError
from netpersona.system.command import in_netns, run
from netpersona.system.netns import NetnsIdentity, netns_identity, on_delete

__all__ = [
    "LIBRARY_NAME",
    "NftLibrary",
    "NftProgram",
    "NftResult",
    "NftRunner",
    "close_runners",
    "nft_runner",
]

T = TypeVar("T")

LIBRARY_NAME = "libnftables.so.1"
# libnftables.h: enum nft_output_flags
_OUTPUT_JSON = 1 << 4
_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class NftResult:
    """One command's outcome, as the ``nft`` program would give it."""

    argv: tuple[str, ...]  # the equivalent ``nft`` command line, to name it in errors
    returncode: int
    stdout: str
    stderr: str


class NftRunner(Protocol):
    """Runs one nftables command (text or a JSON document) in one network namespace."""

    def run(
        self, command: str, *, json: bool = False, check: bool = False, listing: bool = False
    ) -> NftResult:
        """``nft [-j] [--check] -f -`` with ``command`` on its standard input: ``json``
        prints JSON, ``check`` asks the kernel and commits nothing; ``listing`` says the
        command reads whole sets (their elements are then not kept in a cache)."""
        ...

    def lookup(self, family: str, table: str, name: str, keys: Sequence[str]) -> list[bool]:
        """Whether set ``name`` holds each of ``keys``, asked key by key (nft_elements.py)."""
        ...


def _argv(netns: str | None, json: bool, check: bool) -> tuple[str, ...]:
    flags = (["-j"] if json else []) + (["--check"] if check else [])
    return tuple(in_netns(netns, ["nft", *flags, "-f", "-"]))


class NftProgram:
    """:class:`NftRunner` over the ``nft`` program (one process per command)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def __repr__(self) -> str:
        return f"NftProgram(netns={self.netns!r})"

    def run(
        self, command: str, *, json: bool = False, check: bool = False, listing: bool = False
    ) -> NftResult:
        if listing:
            # nft -j -f reads its input as JSON first; a listing is given as words instead.
            words = (["-j"] if json else []) + command.split()
            argv = tuple(in_netns(self.netns, ["nft", *words]))
            done = run(argv, check=False)
        else:
            argv = _argv(self.netns, json, check)
            done = run(argv, input=command, check=False)
        return NftResult(argv, done.returncode, done.stdout, done.stderr)

    def lookup(self, family: str, table: str, name: str, keys: Sequence[str]) -> list[bool]:
        sock = _netfilter_socket(self.netns)
        try:
            return lookup_elements(sock, family, table, name, keys)
        finally:
            sock.close()


class _Library:
    """The C functions, typed once (libnftables(3))."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path, use_errno=True)
        ctx, text, uint, boolean = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_bool
        signatures: dict[str, tuple[list[type], type | None]] = {
            "nft_ctx_new": ([ctypes.c_uint32], ctx),
            "nft_ctx_free": ([ctx], None),
            "nft_ctx_output_set_flags": ([ctx, uint], None),
            "nft_ctx_set_dry_run": ([ctx, boolean], None),
            "nft_ctx_buffer_output": ([ctx], ctypes.c_int),
            "nft_ctx_buffer_error": ([ctx], ctypes.c_int),
            "nft_ctx_get_output_buffer": ([ctx], text),
            "nft_ctx_get_error_buffer": ([ctx], text),
            "nft_run_cmd_from_buffer": ([ctx, text], ctypes.c_int),
        }
        for name, (argtypes, restype) in signatures.items():
            function = getattr(lib, name)
            function.argtypes = argtypes
            function.restype = restype
        self.lib = lib


_LOADED: list[_Library | None] = []
_LOAD_LOCK = threading.Lock()


def _library() -> _Library | None:
    """libnftables, loaded once; None if it is not installed."""
    with _LOAD_LOCK:
        if not _LOADED:
            try:
                # By its soname, through the dynamic loader's own search: find_library would
                # run ldconfig (a process, at every agent start) to find the same file.
                _LOADED.append(_Library(LIBRARY_NAME))
            except (OSError, AttributeError):  # missing, or too old to have these symbols
                _LOADED.append(None)
        return _LOADED[0]


class _Context:
    """One ``struct nft_ctx``: used by one thread at a time (the library keeps state in it)."""

    def __init__(self, library: _Library) -> None:
        self._lib = library.lib
        self._lock = threading.Lock()
        handle = self._lib.nft_ctx_new(0)
        if not handle:
            raise KernelError("libnftables: nft_ctx_new failed")
        if self._lib.nft_ctx_buffer_output(handle) or self._lib.nft_ctx_buffer_error(handle):
            self._lib.nft_ctx_free(handle)
            raise KernelError("libnftables: cannot buffer the context's output")
        self._handle: int | None = handle

    def run(self, command: str, json: bool, check: bool) -> tuple[int, str, str]:
        with self._lock:
            handle = self._handle
            if handle is None:
                raise KernelError("libnftables: the context is closed")
            lib = self._lib
            lib.nft_ctx_output_set_flags(handle, _OUTPUT_JSON if json else 0)
            lib.nft_ctx_set_dry_run(handle, check)
            status = lib.nft_run_cmd_from_buffer(handle, command.encode())
            # Each getter hands back what was written since the last call, and rewinds.
            out = lib.nft_ctx_get_output_buffer(handle) or b""
            err = lib.nft_ctx_get_error_buffer(handle) or b""
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._lib.nft_ctx_free(self._handle)
                self._handle = None


class NftLibrary:
    """:class:`NftRunner` in this process, over libnftables, in ``netns`` or this namespace.

    The context is made on first use; for another namespace, it lives in one worker thread
    that joined the namespace (``/run/netns/<name>``, as ``ip netns`` names it) at start.
    """

    def __init__(self, library: _Library, netns: str | None = None) -> None:
        self.netns = netns
        self._library = library
        self._context: _Context | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._identity: NetnsIdentity | None = None  # of the namespace the worker joined
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None  # NETLINK_NETFILTER, for lookup
        # Reentrant: a command under it that finds the namespace made again closes it all.
        self._socket_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"NftLibrary(netns={self.netns!r})"

    def run(
        self, command: str, *, json: bool = False, check: bool = False, listing: bool = False
    ) -> NftResult:
        def call() -> tuple[int, str, str]:
            if not listing:
                return self._own_context().run(command, json, check)
            # A listing of a 100k-element set leaves the elements in the context's cache,
            # and the next command, finding the kernel's generation moved, frees them first:
            # 100-200 ms for a one-element update. A context of its own frees them here.
            once = _Context(self._library)
            try:
                return once.run(command, json, check)
            finally:
                once.close()

        status, out, err = call() if self.netns is None else self._in_netns(call)
        # The program exits 1 for any failure (nft(8)); the library returns -1 or an errno.
        return NftResult(_argv(self.netns, json, check), 0 if status == 0 else 1, out, err)

    def lookup(self, family: str, table: str, name: str, keys: Sequence[str]) -> list[bool]:
        if self.netns is not None:
            self._follow_netns()
        with self._socket_lock:
            if self._socket is None:
                self._socket = (
                    _new_netfilter_socket()
                    if self.netns is None
                    else self._in_netns(_new_netfilter_socket)
                )
                self._socket.settimeout(_TIMEOUT_S)
            try:
                return lookup_elements(self._socket, family, table, name, keys)
            except OSError:
                # The socket may hold replies of the failed exchange: start afresh.
                self._socket.close()
                self._socket = None
                raise

    def close(self) -> None:
        """Free the context and end the worker thread (a later command makes them again)."""
        with self._socket_lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
        with self._lock:
            worker, context = self._worker, self._context
            self._worker = self._context = self._identity = None
        if worker is not None:
            if context is not None:
                with contextlib.suppress(RuntimeError):  # a worker that never started
                    worker.submit(context.close).result()
            worker.shutdown(wait=True)
        elif context is not None:
            context.close()

    def _own_context(self) -> _Context:
        # Called where the context's commands run: this thread, or the namespace's worker.
        with self._lock:
            if self._context is None:
                self._context = _Context(self._library)
            return self._context

    def _follow_netns(self) -> NetnsIdentity:
        """The identity of the namespace named now; what was made in another one, let go.

        A name can be deleted and made again: the worker (and the socket) must be in the
        namespace that bears the name now (a stat(2) a command), not in the one it joined."""
        assert self.netns is not None
        identity = netns_identity(self.netns)
        if identity is None:
            self.close()
            raise KernelError(f"there is no network namespace {self.netns!r}")
        if identity != self._identity:
            self.close()
        return identity

    def _in_netns(self, call: Callable[[], T]) -> T:
        netns = self.netns
        assert netns is not None
        identity = self._follow_netns()
        with self._lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(
                    max_workers=1,
                    thread_name_prefix=f"nft-{netns}",
                    initializer=_join_netns,
                    initargs=(netns, identity),
                )
                self._identity = identity
            worker = self._worker
        try:
            return worker.submit(call).result()
        except RuntimeError as exc:  # BrokenThreadPool: the worker could not join it
            with self._lock:
                if self._worker is worker:
                    self._worker = self._context = None
            worker.shutdown(wait=False)
            raise KernelError(f"cannot enter network namespace {self.netns!r}: {exc}") from None


def _new_netfilter_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)


def _netfilter_socket(netns: str | None) -> socket.socket:
    """A new ``NETLINK_NETFILTER`` socket of ``netns``, made by a short-lived thread that
    joins it (a socket stays in the namespace it was made in)."""
    if netns is None:
        sock = _new_netfilter_socket()
    else:
        identity = netns_identity(netns)
        if identity is None:
            raise KernelError(f"there is no network namespace {netns!r}")
        with ThreadPoolExecutor(
            max_workers=1, initializer=_join_netns, initargs=(netns, identity)
        ) as once:
            try:
                sock = once.submit(_new_netfilter_socket).result()
            except RuntimeError as exc:
                raise KernelError(f"cannot enter network namespace {netns!r}: {exc}") from None
    sock.settimeout(_TIMEOUT_S)
    return sock


def _join_netns(netns: str, identity: NetnsIdentity) -> None:
    """Move the calling (worker) thread into the network namespace ``netns``, if it is still
    the one of ``identity``."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            raise OSError(f"network namespace {netns!r} was replaced")
        setns_net(fd)
    finally:
        os.close(fd)


# One runner per namespace, shared by every kernel object of the process: a context holds a
# netlink socket and a cache of the ruleset, so making one per call would waste both.
_RUNNERS: dict[str | None, NftRunner] = {}


def nft_runner(netns: str | None = None, *, program: bool = False) -> NftRunner:
    """The runner for ``netns``: in-process if libnftables loads, else the ``nft`` program
    (always the program when ``program`` is true, or ``NETPERSONA_NFT=program`` is set)."""
    if program or os.environ.get("NETPERSONA_NFT") == "program":
        return NftProgram(netns)
    library = _library()
    if library is None:
        return NftProgram(netns)
    with _LOAD_LOCK:
        runner = _RUNNERS.get(netns)
        if runner is None:
            runner = _RUNNERS[netns] = NftLibrary(library, netns)
        return runner


def close_runners(names: Sequence[str | None] | None = None) -> None:
    """Free the contexts (and worker threads) of ``names`` (all if None): a namespace that is
    deleted keeps no thread of this process in it."""
    with _LOAD_LOCK:
        chosen = list(_RUNNERS) if names is None else [n for n in names if n in _RUNNERS]
        runners = [_RUNNERS.pop(name) for name in chosen]
    for runner in runners:
        if isinstance(runner, NftLibrary):
            runner.close()


# A worker thread in a namespace keeps the namespace (and its links) alive after its name is
# deleted; the namespaces this program deletes let their workers go first.
on_delete(lambda name: close_runners([name]))
