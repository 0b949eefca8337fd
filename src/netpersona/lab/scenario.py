"""A lab scenario: the VMs, their labels and links, the personas and policy, and the probes.

The default scenario is ``examples/lab/scenario.yaml``; copy it and edit it to try your own.
Paths inside a scenario are relative to the scenario file. The examples are package data
(``netpersona/examples``), so an installed ``netpersona lab`` has its default scenario too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from netpersona.errors import FieldError, InvalidDocument
from netpersona.model.labels import check_label_key, check_label_value, check_persona_name

__all__ = [
    "DEFAULT_SCENARIO",
    "EXAMPLES",
    "LabInterface",
    "LabVm",
    "ProbeSettings",
    "Scenario",
    "load_scenario",
]

# Installed from a wheel, a package's files are plain files on disk, so a Path serves.
EXAMPLES = Path(str(files("netpersona").joinpath("examples")))
DEFAULT_SCENARIO = EXAMPLES / "lab" / "scenario.yaml"

BRIDGES = ("br0", "br1")


@dataclass(frozen=True, slots=True)
class LabInterface:
    name: str
    address: IPv4Interface
    bridge: str = "br0"
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class LabVm:
    name: str
    interfaces: tuple[LabInterface, ...]
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    tcp_denied: int = 4444
    udp: int = 5004
    broadcast_udp: int = 6000
    listed_group: str = "239.1.1.1"
    unlisted_group: str = "239.9.9.9"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    path: Path
    networks: Mapping[str, IPv4Interface]  # bridge -> the hypervisor's gateway address on it
    personas: Mapping[str, Path]  # persona name -> file
    policy: Path
    vms: tuple[LabVm, ...]
    context: Mapping[str, str]
    raised_context: Mapping[str, str]
    probes: ProbeSettings

    def vm(self, name: str) -> LabVm:
        return next(vm for vm in self.vms if vm.name == name)


def load_scenario(path: Path) -> Scenario:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidDocument(
            [FieldError("", f"cannot read the scenario: {exc}")], str(path)
        ) from None
    errors: list[FieldError] = []
    if not isinstance(raw, Mapping):
        raise InvalidDocument([FieldError("", "a scenario is a mapping")], str(path))
    base = path.parent

    def need(key: str, kind: type) -> Any:
        value = raw.get(key)
        if not isinstance(value, kind):
            errors.append(FieldError(f"/{key}", f"{key} is required ({kind.__name__})"))
            return kind()
        return value

    networks: dict[str, IPv4Interface] = {}
    for bridge, gateway in need("networks", dict).items():
        if bridge not in BRIDGES:
            errors.append(FieldError(f"/networks/{bridge}", f"bridges are {', '.join(BRIDGES)}"))
            continue
        try:
            networks[bridge] = IPv4Interface(gateway)
        except ValueError as exc:
            errors.append(FieldError(f"/networks/{bridge}", str(exc)))
    personas: dict[str, Path] = {}
    for name, file in need("personas", dict).items():
        if problem := check_persona_name(name):
            errors.append(FieldError(f"/personas/{name}", problem))
        personas[name] = (base / str(file)).resolve()
    vms: list[LabVm] = []
    for index, entry in enumerate(need("vms", list)):
        at = f"/vms/{index}"
        try:
            vms.append(_vm(entry, networks, at, errors))
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(FieldError(at, f"not a VM ({exc})"))
    names = [vm.name for vm in vms]
    for name in {n for n in names if names.count(n) > 1}:
        errors.append(FieldError("/vms", f"VM {name!r} is listed twice"))
    probes = ProbeSettings(**(raw.get("probes") or {}))
    if errors:
        raise InvalidDocument(errors, str(path))
    return Scenario(
        name=str(raw.get("name", path.stem)),
        path=path,
        networks=networks,
        personas=personas,
        policy=(base / str(need("policy", str))).resolve(),
        vms=tuple(vms),
        context={str(k): str(v) for k, v in (raw.get("context") or {}).items()},
        raised_context={str(k): str(v) for k, v in (raw.get("raised_context") or {}).items()},
        probes=probes,
    )


def _vm(
    entry: Mapping[str, Any],
    networks: Mapping[str, IPv4Interface],
    at: str,
    errors: list[FieldError],
) -> LabVm:
    labels = {str(k): v for k, v in (entry.get("labels") or {}).items()}
    for key, value in labels.items():
        if problem := check_label_key(key) or check_label_value(value):
            errors.append(FieldError(f"{at}/labels/{key}", problem))
    interfaces = []
    for number, raw in enumerate(entry["interfaces"]):
        iface = LabInterface(
            name=str(raw.get("name", f"eth{number}")),
            address=IPv4Interface(raw["address"]),
            bridge=str(raw.get("bridge", "br0")),
            tier=raw.get("tier"),
        )
        gateway = networks.get(iface.bridge)
        if gateway is None:
            errors.append(
                FieldError(f"{at}/interfaces/{number}/bridge", f"no network for {iface.bridge}")
            )
        elif iface.address.network != gateway.network or iface.address.ip == gateway.ip:
            errors.append(
                FieldError(
                    f"{at}/interfaces/{number}/address",
                    f"{iface.address} is not a free address of {gateway.network}",
                )
            )
        interfaces.append(iface)
    return LabVm(str(entry["name"]), tuple(interfaces), labels)


def network_of(scenario: Scenario, bridge: str) -> IPv4Network:
    return scenario.networks[bridge].network


def broadcast_of(scenario: Scenario, bridge: str = "br0") -> IPv4Address:
    return network_of(scenario, bridge).broadcast_address
