"""The control channel (spec section 8): a sans-I/O gossip core, its simulator, its transport.

Pure: :mod:`~netpersona.gossip.config`, :mod:`~netpersona.gossip.wire`,
:mod:`~netpersona.gossip.store`, :mod:`~netpersona.gossip.node` (with what it delegates to:
:mod:`~netpersona.gossip.step`, :mod:`~netpersona.gossip.antientropy`,
:mod:`~netpersona.gossip.rumors`, :mod:`~netpersona.gossip.wants`,
:mod:`~netpersona.gossip.targets`), :mod:`~netpersona.gossip.limits` and
:mod:`~netpersona.gossip.simulator`. The only I/O is :mod:`netpersona.gossip.transport`
(asyncio UDP), which is not imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from netpersona.errors import WireError

if TYPE_CHECKING:
    from netpersona.gossip.config import GossipConfig
    from netpersona.gossip.node import Datagram, GossipNode, Step
    from netpersona.gossip.store import Held, HeldCertificates, StoreSnapshot
    from netpersona.gossip.wire import MAX_DATAGRAM, decode, encode, instance_key

# Each name's module, imported on first use: the agent reads its settings (config) whether or
# not the channel runs, and the node, through the verifier, loads the JOSE library.
_HOMES = {
    "GossipConfig": "config",
    **dict.fromkeys(("Datagram", "GossipNode", "Step"), "node"),
    **dict.fromkeys(("Held", "HeldCertificates", "StoreSnapshot"), "store"),
    **dict.fromkeys(("MAX_DATAGRAM", "decode", "encode", "instance_key"), "wire"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"netpersona.gossip.{home}"), name)


__all__ = [
    "MAX_DATAGRAM",
    "Datagram",
    "GossipConfig",
    "GossipNode",
    "Held",
    "HeldCertificates",
    "Step",
    "StoreSnapshot",
    "WireError",
    "decode",
    "encode",
    "instance_key",
]
