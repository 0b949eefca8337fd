"""The control channel (spec section 8): a sans-I/O gossip core, its simulator, its transport.

Pure: :mod:`~netpersona.gossip.config`, :mod:`~netpersona.gossip.wire`,
:mod:`~netpersona.gossip.store`, :mod:`~netpersona.gossip.node` (with what it delegates to:
:mod:`~netpersona.gossip.step`, :mod:`~netpersona.gossip.antientropy`,
:mod:`~netpersona.gossip.rumors`, :mod:`~netpersona.gossip.wants`,
:mod:`~netpersona.gossip.targets`), :mod:`~netpersona.gossip.limits` and
:mod:`~netpersona.gossip.simulator`. The only I/O is :mod:`netpersona.gossip.transport`
(asyncio UDP), which is not imported here.
"""

from netpersona.errors import WireError
from netpersona.gossip.config import GossipConfig
from netpersona.gossip.node import Datagram, GossipNode, Step
from netpersona.gossip.store import Held, HeldCertificates, StoreSnapshot
from netpersona.gossip.wire import MAX_DATAGRAM, decode, encode, instance_key

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
