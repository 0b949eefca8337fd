"""Where the metadata service keeps instances, personas, pins, context, tokens and the audit log.

:class:`Store` is the seam; :class:`SqliteStore` the embedded backend; :func:`open_store`
turns a ``--db`` URL into a store.
"""

from netpersona.store.base import (
    ApiToken,
    AuditEntry,
    ContextEntry,
    FleetData,
    Instance,
    InstanceStatus,
    Interface,
    IssuedCertificate,
    Page,
    PersonaVersion,
    PolicyVersion,
    Role,
    Store,
    Tier,
)
from netpersona.store.sqlite import SqliteStore
from netpersona.store.url import open_store

__all__ = [
    "ApiToken",
    "AuditEntry",
    "ContextEntry",
    "FleetData",
    "Instance",
    "InstanceStatus",
    "Interface",
    "IssuedCertificate",
    "Page",
    "PersonaVersion",
    "PolicyVersion",
    "Role",
    "SqliteStore",
    "Store",
    "Tier",
    "open_store",
]
