"""A :class:`~netpersona.dataplane.kernel.Kernel` wrapper that fails one chosen change.

``FaultyKernel(kernel, fail_at=n)`` passes every call through to ``kernel`` but makes the n-th
changing call (counted over :data:`~netpersona.dataplane.kernel.MUTATIONS`) raise
:class:`~netpersona.errors.KernelError`, either before it reaches the kernel (``after=False``)
or after it took effect (``after=True``, a command that did its work and still reported
failure). With ``fail_at=None`` it only counts, which is how a test learns how many steps an
apply has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from netpersona.dataplane.kernel import MUTATIONS, Kernel
from netpersona.errors import KernelError

__all__ = ["FaultyKernel"]


class FaultyKernel:
    def __init__(self, inner: Kernel, fail_at: int | None = None, *, after: bool = False) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.after = after
        self.calls: list[str] = []

    @property
    def kernel(self) -> Kernel:
        return cast(Kernel, self)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in MUTATIONS:
            return attr
        return self._counted(name, attr)

    def _counted(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if len(self.calls) != self.fail_at:
                return call(*args, **kwargs)
            if self.after:
                call(*args, **kwargs)
            raise KernelError(f"injected fault at change {self.fail_at} ({name})")

        return counted
