"""The operators' API under ``/v1/admin``, one module per resource.

Roles: ``reader`` may read everything but tokens; ``operator`` may also change instances,
labels, personas, pins, the policy and context; ``admin`` may also manage tokens. Every write
names the token in the audit log (:mod:`.access`). Paging, ``If-Match`` and the write path are
shared (:mod:`.answers`).

The persona policy is checked in full before it is stored (catalog references, shadowed rules,
CEL, and the tests it carries); context values the policy does not allow and deleting a
persona the policy hands out are refused. Explain and what-if ask the service's policy engine
and commit nothing.
"""

from fastapi import APIRouter

from netpersona.service.admin import (
    audit,
    instances,
    network_context,
    persona_policy,
    personas,
    tokens,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])
for _resource in (instances, personas, persona_policy, network_context, audit, tokens):
    router.include_router(_resource.router)
