"""The persona model: documents in, frozen validated values out. Pure: no I/O."""

from netpersona.model.parse import load_document, parse_persona, parse_persona_text
from netpersona.model.persona import (
    CidrSelector,
    CommunicationMode,
    LabelSelector,
    PeerSelector,
    Persona,
    PersonaSelector,
    QosParameters,
    SecurityProfile,
)
from netpersona.model.protocols import L4, SERVICES, PortRange, ProtocolEntry, ProtocolRule

__all__ = [
    "L4",
    "SERVICES",
    "CidrSelector",
    "CommunicationMode",
    "LabelSelector",
    "PeerSelector",
    "Persona",
    "PersonaSelector",
    "PortRange",
    "ProtocolEntry",
    "ProtocolRule",
    "QosParameters",
    "SecurityProfile",
    "load_document",
    "parse_persona",
    "parse_persona_text",
]
