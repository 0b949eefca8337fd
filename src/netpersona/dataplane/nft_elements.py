"""Set elements looked up by key in the kernel, over nfnetlink (``NFT_MSG_GETSETELEM``).

After a peer joins, the applier asks the kernel whether the elements it sent are there. A
listing reads the whole set (100k elements: a second), and a checked batch (``nft --check
delete element ...``) is answered right but costs an aborted transaction, which waits for an
RCU grace period (8-16 ms on a loaded host). A ``GETSETELEM`` request that is not a dump
names the keys and the kernel answers each from the set itself (the set's lookup, as a packet
would be matched), with the element (``NFT_MSG_NEWSETELEM``) or ``ENOENT``; nothing is
changed, so nothing waits. Each key goes in a message of its own, all in one datagram, so one
missing key does not hide the answers for the others.

Messages are built and read here (nfnetlink(7): a ``nlmsghdr``, an ``nfgenmsg``, then
attributes; the attribute numbers are those of ``linux/netfilter/nf_tables.h``).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Sequence
from ipaddress import ip_address

__all__ = ["NETLINK_NETFILTER", "lookup_elements"]

NETLINK_NETFILTER = 12
_NFPROTO = {"inet": 1, "ip": 2, "ip6": 10}
_MSG_GETSETELEM = (10 << 8) | 13  # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETSETELEM
_MSG_NEWSETELEM = (10 << 8) | 12
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_NLMSG_ERROR = 2
_NLA_F_NESTED = 1 << 15
# enum nft_set_elem_list_attributes / nft_list_attributes / nft_set_elem_attributes /
# nft_data_attributes
_LIST_TABLE, _LIST_SET, _LIST_ELEMENTS = 1, 2, 3
_LIST_ELEM = 1
_ELEM_KEY = 1
_DATA_VALUE = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, resource id (big endian, 0)
_ATTR = struct.Struct("=HH")
_ERROR = struct.Struct("=i")
_RECV_BYTES = 1 << 16
_SEQUENCE = itertools.count(1)


def _attr(kind: int, payload: bytes) -> bytes:
    body = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def _request(family: str, table: str, name: str, key: bytes, seq: int) -> bytes:
    element = _attr(_ELEM_KEY | _NLA_F_NESTED, _attr(_DATA_VALUE, key))
    payload = (
        _NFGEN.pack(_NFPROTO[family], 0, 0)
        + _attr(_LIST_TABLE, table.encode() + b"\0")
        + _attr(_LIST_SET, name.encode() + b"\0")
        + _attr(_LIST_ELEMENTS | _NLA_F_NESTED, _attr(_LIST_ELEM | _NLA_F_NESTED, element))
    )
    flags = _NLM_F_REQUEST | _NLM_F_ACK
    return _HEADER.pack(_HEADER.size + len(payload), _MSG_GETSETELEM, flags, seq, 0) + payload


def _key_bytes(key: str) -> bytes:
    """An address as the set stores it: network byte order, 4 or 16 bytes."""
    return ip_address(key).packed


def lookup_elements(
    sock: socket.socket, family: str, table: str, name: str, keys: Sequence[str]
) -> list[bool]:
    """Whether set ``name`` of table ``family table`` holds each of ``keys`` (addresses).

    A set (or table) that does not exist holds none. ``sock`` is a ``NETLINK_NETFILTER``
    socket of the namespace to ask; any other failure is an OSError.
    """
    if not keys:
        return []
    first = next(_SEQUENCE)
    seqs = {first + index: index for index in range(len(keys))}
    datagram = b"".join(
        _request(family, table, name, _key_bytes(key), seq)
        for seq, key in zip(seqs, keys, strict=True)
    )
    for _ in keys[1:]:  # keep the counter past the numbers used
        next(_SEQUENCE)
    found: list[bool | None] = [None] * len(keys)
    seen = [False] * len(keys)
    sock.send(datagram)
    pending = len(keys)
    while pending:
        data, _, flags, _ = sock.recvmsg(_RECV_BYTES)
        if flags & socket.MSG_TRUNC:
            raise OSError("nfnetlink reply larger than the receive buffer")
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size or offset + length > len(data):
                raise OSError(f"malformed nfnetlink message (length {length})")
            asked = seqs.get(seq)
            if asked is not None:
                if kind == _MSG_NEWSETELEM:
                    seen[asked] = True
                elif kind == _NLMSG_ERROR and found[asked] is None:
                    (error,) = _ERROR.unpack_from(data, offset + _HEADER.size)
                    if error == 0:
                        found[asked] = seen[asked]
                    elif -error == errno.ENOENT:
                        found[asked] = False
                    else:
                        raise OSError(-error, os.strerror(-error))
                    pending -= 1
            offset += (length + 3) & ~3
    return [bool(held) for held in found]
