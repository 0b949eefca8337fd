"""The JSON Schema (draft 2020-12) of a persona document, for editors and operators' own CI.

The schema says what a document looks like; :func:`netpersona.model.parse.parse_persona` is the
authority and checks more (rates and sizes by value, egress_ceil >= egress_rate, and the rules
that tie fields together, which the schema states with if/then where JSON Schema can).
"""

from __future__ import annotations

from typing import Any

from netpersona.model.checks import MAX_LIST
from netpersona.model.dscp import DSCP_NAMES
from netpersona.model.parse import MAX_CONNECTIONS
from netpersona.model.persona import CommunicationMode, SecurityProfile
from netpersona.model.protocols import SERVICES

__all__ = ["persona_schema"]

_RATE = r"^[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]?([bB][iI][tT]|[bB][pP][sS]))$"
_SIZE = r"^[0-9]+(\.[0-9]+)?\s*([kKmM]?[bB])$"
_PROTOCOL = r"^(tcp|udp|sctp)(/[0-9]{1,5}(-[0-9]{1,5})?)?$|^(icmp|igmp|gre|esp|ah)$"
_EXTENSION: dict[str, Any] = {"^x-": {}}


def persona_schema() -> dict[str, Any]:
    persona: dict[str, Any] = {
        "type": "object",
        "required": ["communication_mode", "security_profile", "allowed_protocols", "priority"],
        "additionalProperties": False,
        "patternProperties": _EXTENSION,
        "properties": {
            "communication_mode": {"enum": [m.value for m in CommunicationMode]},
            "security_profile": {"enum": [p.value for p in SecurityProfile]},
            "allowed_protocols": {
                "type": "array",
                "maxItems": MAX_LIST,
                "uniqueItems": True,
                "items": {
                    "type": "string",
                    "anyOf": [{"pattern": _PROTOCOL}, {"enum": sorted(SERVICES)}],
                },
            },
            "priority": {"type": "integer", "minimum": 0, "maximum": 7},
            "qos_parameters": {
                "description": "Every key optional; an absent qos_parameters means {}.",
                "default": {},
                "type": "object",
                "additionalProperties": False,
                "patternProperties": _EXTENSION,
                "properties": {
                    "egress_rate": {"type": "string", "pattern": _RATE},
                    "egress_ceil": {"type": "string", "pattern": _RATE},
                    "burst": {"type": "string", "pattern": _SIZE},
                    "ingress_rate": {"type": "string", "pattern": _RATE},
                    "dscp": {
                        "anyOf": [
                            {"type": "integer", "minimum": 0, "maximum": 63},
                            {"enum": sorted(DSCP_NAMES)},
                        ]
                    },
                    "max_connections": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_CONNECTIONS,
                    },
                    "mtu": {"type": "integer", "minimum": 68, "maximum": 65535},
                },
            },
            "multicast_groups": {
                "type": "array",
                "maxItems": MAX_LIST,
                "uniqueItems": True,
                "items": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            },
            "peers": {
                "type": "array",
                "maxItems": MAX_LIST,
                "items": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "persona": {
                            "type": "string",
                            "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                        },
                        "labels": {
                            "type": "object",
                            "minProperties": 1,
                            "additionalProperties": {"type": "string"},
                        },
                        "cidr": {"type": "string"},
                    },
                },
            },
        },
        "allOf": [
            {
                "if": {"properties": {"communication_mode": {"const": "multicast"}}},
                "then": {
                    "required": ["multicast_groups"],
                    "properties": {"multicast_groups": {"minItems": 1}},
                },
            },
            {
                "if": {"properties": {"communication_mode": {"const": "restricted"}}},
                "then": {"required": ["peers"], "properties": {"peers": {"minItems": 1}}},
            },
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:netpersona:schema:persona-v1",
        "title": "netpersona network persona, v1",
        "type": "object",
        "required": ["network_persona"],
        "additionalProperties": False,
        "patternProperties": _EXTENSION,
        "properties": {"network_persona": {"$ref": "#/$defs/persona"}},
        "$defs": {"persona": persona},
    }
