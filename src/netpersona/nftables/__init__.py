"""nftables at the edge: libnftables JSON rendered as an nft script for people and ``nft -c``."""

from netpersona.nftables.render import render_batch

__all__ = ["render_batch"]
