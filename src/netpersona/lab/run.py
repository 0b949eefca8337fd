"""Running a lab: build it, converge it, probe it, raise the threat level, probe again, tear down.

A lab is a hypervisor namespace (bridges, the metadata service) and one namespace per VM with
its own agent. Its namespaces are named ``<prefix>-<run id>-*`` (the run id is random, so no
other run has the same names) and everything lives under a work directory: the lab's record
(``lab.json``) lets ``netpersona lab status|probe|down`` find a lab that ``lab up`` built, and
its ledger (:mod:`netpersona.lab.ledger`) is what ``down`` removes, whatever became of the
process that built it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import secrets
import shutil
import socket
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console

from netpersona.admin_client import AdminClient
from netpersona.errors import Conflict, KernelError, NetpersonaError
from netpersona.lab.changes import Phase
from netpersona.lab.expect import Host, ProbeKind
from netpersona.lab.fleet import LabProcesses
from netpersona.lab.ledger import Ledger, Removal
from netpersona.lab.matrix import expected_matrix, run_matrix
from netpersona.lab.report import activity, steps
from netpersona.lab.scenario import Scenario, load_scenario
from netpersona.lab.topology import Topology
from netpersona.model import parse_persona
from netpersona.policy import parse_policy
from netpersona.system.netns import Netns

__all__ = ["LabRecord", "LabRun", "exclusive", "remove_recorded"]

# How long a replica whose call failed may go on accepting connections before the failure is
# taken as its answer rather than its death.
FAIL_OVER_WAIT = 3.0

RECORD = "lab.json"
CONVERGE_TIMEOUT = 120.0
SETTLE = 1.5  # seconds without any agent changing anything: peer views have caught up
IN_FORCE = ("applied", "unchanged", "peers-updated")


def holds(record: dict[str, Any], etag: str) -> bool:
    """The agent whose ``agent.json`` is ``record`` holds the persona answer ``etag``."""
    return record.get("result") in IN_FORCE and record.get("persona_etag") == etag


EVERY_FIELD = frozenset(
    {"communication_mode", "security_profile", "allowed_protocols", "priority"}
    | {"qos_parameters", "multicast_groups", "peers"}
)


@dataclass
class LabRecord:
    prefix: str
    scenario: str
    workdir: str
    run_id: str
    replicas: int = 1

    @classmethod
    def load(cls, workdir: Path) -> LabRecord:
        try:
            return cls(**json.loads((workdir / RECORD).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise NetpersonaError(f"no lab recorded in {workdir} ({exc})") from None

    def save(self) -> None:
        path = Path(self.workdir) / RECORD
        path.with_suffix(".tmp").write_text(json.dumps(asdict(self), indent=1))
        path.with_suffix(".tmp").replace(path)


@contextlib.contextmanager
def exclusive(workdir: Path) -> Iterator[None]:
    """Hold the lab in ``workdir`` for one command: building it, tearing it down.

    An flock is released by the kernel when its holder dies, so a crashed run never keeps it.
    """
    lock = workdir.with_name(f"{workdir.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                f"lab {workdir.name!r} is in use by another netpersona lab command; "
                "wait for it, or pick another --prefix"
            ) from None
        yield


def remove_recorded(workdir: Path) -> Removal:
    """Remove what the run recorded in ``workdir`` created (also one that crashed), and
    nothing else; the work directory goes too once nothing recorded is left."""
    removal = Ledger.load(workdir).undo()
    if not removal.left:
        shutil.rmtree(workdir, ignore_errors=True)
    return removal


@dataclass
class LabRun:
    """One run of a scenario: its namespaces, its processes, and the service's admin API."""

    scenario: Scenario
    prefix: str
    workdir: Path
    console: Console = field(default_factory=Console)
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    topo: Topology = field(init=False)
    processes: LabProcesses = field(init=False)
    _admin: AdminClient | None = None
    agents_started: float = 0.0  # monotonic time the first agent was started
    logs_kept: Path | None = None  # where down(keep_logs=True) moved the processes' logs
    replicas: int = 1  # metadata service replicas (above 1: on a throwaway PostgreSQL)
    admin_replica: int = 0  # the replica whose admin socket the operator side uses

    def __post_init__(self) -> None:
        extra = {k: v for k, v in self.scenario.networks.items() if k != "br0"}
        ledger = Ledger.load(self.workdir)
        self.topo = Topology(
            f"{self.prefix}-{self.run_id}",
            self.scenario.networks["br0"],
            ledger=ledger,
            replicas=self.replicas,
        )
        self._extra = extra
        self.processes = LabProcesses(self.topo, self.workdir, self.replicas)

    @classmethod
    def attach(cls, workdir: Path, console: Console) -> LabRun:
        """The lab ``lab up`` left running in ``workdir``."""
        record = LabRecord.load(workdir)
        scenario = load_scenario(Path(record.scenario))
        lab = cls(
            scenario, record.prefix, workdir, console, record.run_id, replicas=record.replicas
        )
        lab.topo.hypervisor = Netns(lab.topo.ns_name("hv"))
        for vm in lab.scenario.vms:
            lab.topo.vms[vm.name] = Netns(lab.topo.ns_name(vm.name))
        return lab

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            token = (self.processes.data_dir / "admin.token").read_text().strip()
            path = self.processes.admin_socket_of(self.admin_replica)
            socket = httpx.HTTPTransport(uds=str(path))
            self._admin = AdminClient("http://netpersona", token, transport=socket)
        return self._admin

    def use_replica(self, n: int) -> None:
        """Talk to the admin API of replica ``n`` (0 is the first) from now on."""
        if not 0 <= n < self.replicas:
            raise NetpersonaError(f"replica {n + 1}: the lab runs {self.replicas} replica(s)")
        self.close()
        self.admin_replica = n

    def close(self) -> None:
        """Close the connection to the admin API (the next call opens another)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self.admin.request(method, path, json=body)
        except NetpersonaError:
            if not self._fail_over():
                raise
        return self.admin.request(method, path, json=body)

    def _answers(self, n: int) -> bool:
        """Whether replica ``n``'s admin socket accepts a connection."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            try:
                probe.connect(str(self.processes.admin_socket_of(n)))
            except OSError:
                return False
        return True

    def _fail_over(self) -> bool:
        """After a failed call: when the replica in use no longer accepts connections (killed,
        or never started), use the next one that does, as the agents do. False when there is
        none, or the replica in use is up (the failure was its answer, not its absence)."""
        if self.replicas == 1:
            return False
        # A replica killed a moment ago may still accept connections while it dies.
        deadline = time.monotonic() + FAIL_OVER_WAIT
        while self._answers(self.admin_replica):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        for step in range(1, self.replicas):
            n = (self.admin_replica + step) % self.replicas
            if self._answers(n):
                self.use_replica(n)
                return True
        return False

    # --- building
    def build(self) -> None:
        """Build the lab, after removing what an earlier run in the same work directory left."""
        s = self.scenario
        self.processes.check_replicas()
        earlier = remove_recorded(self.workdir)
        if earlier.left:
            raise KernelError(
                f"an earlier lab in {self.workdir} could not be removed: {', '.join(earlier.left)}"
            )
        self.workdir.mkdir(parents=True)  # a fresh service database every time
        self.topo.ledger = Ledger.load(self.workdir)
        LabRecord(self.prefix, str(s.path), str(self.workdir), self.run_id, self.replicas).save()
        total = 4 + len(s.vms) * 2 + len(s.personas)
        with steps(self.console, "building the lab", total) as step:
            self.topo.create_hypervisor(self._extra)
            step("hypervisor and bridges")
            for vm in s.vms:
                for iface in vm.interfaces:
                    self.topo.add_vm(vm.name, str(iface.address), iface.name, iface.bridge)
                step(f"VM {vm.name}")
            # Logs at info: what a failed run keeps is worth reading.
            self.processes.start_service(log_level="info")
            step("metadata service" if self.replicas == 1 else f"{self.replicas} replicas")
            for name, path in sorted(s.personas.items()):
                document = yaml.safe_load(path.read_text())
                self._call("PUT", f"/v1/admin/personas/{name}", document)
                step(f"persona {name}")
            self._call("PUT", "/v1/admin/policy", yaml.safe_load(s.policy.read_text()))
            for key, value in s.context.items():
                self._call("PUT", f"/v1/admin/context/{key}", {"value": value})
            step("policy and context")
            self.agents_started = time.monotonic()
            for index, vm in enumerate(s.vms):
                interfaces = [
                    {"name": i.name, "addresses": [str(i.address)], "tier": i.tier}
                    for i in vm.interfaces
                ]
                body = {
                    "id": vm.name,
                    "name": vm.name,
                    "addresses": [str(i.address.ip) for i in vm.interfaces],
                    "interfaces": interfaces,
                    "labels": dict(vm.labels),
                }
                self._call("POST", "/v1/admin/instances", body)
                self.processes.start_agent(vm.name, "--log-level", "info", index=index)
                step(f"agent in {vm.name}")

    # --- state
    def views(self) -> dict[str, dict[str, Any]]:
        """What the service tells each VM right now: the persona answer and its ETag."""
        out = {}
        for vm in self.scenario.vms:
            view = self._call("GET", f"/v1/admin/instances/{vm.name}/view")
            out[vm.name] = {**view["persona"]["body"], "etag": view["persona"]["etag"]}
        return out

    def agent_record(self, vm: str) -> dict[str, Any]:
        try:
            body: dict[str, Any] = json.loads(
                (self.processes.state_dir(vm) / "agent.json").read_text()
            )
        except (OSError, ValueError):
            return {}
        return body

    def wait_converged(self, since: float, label: str) -> dict[str, float]:
        """Seconds from ``since`` until each VM's agent holds what the service says."""
        wanted = {vm: v["etag"] for vm, v in self.views().items()}
        took: dict[str, float] = {}
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        with steps(self.console, label, len(wanted)) as step:
            while len(took) < len(wanted):
                if time.monotonic() > deadline:
                    late = sorted(set(wanted) - set(took))
                    raise NetpersonaError(
                        f"{', '.join(late)} did not converge within {CONVERGE_TIMEOUT:g}s"
                    )
                for vm, etag in wanted.items():
                    record = self.agent_record(vm)
                    if vm not in took and holds(record, etag):
                        took[vm] = time.monotonic() - since
                        step(f"{vm} holds its persona")
                time.sleep(0.05)
        self._settle()
        return took

    def _settle(self) -> None:
        """Wait until no agent has changed anything for SETTLE seconds (peer views followed)."""
        last: dict[str, Any] = {}
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < SETTLE:
            now = {
                vm.name: self.agent_record(vm.name).get("updated_at") for vm in self.scenario.vms
            }
            if now != last:
                last, quiet_since = now, time.monotonic()
            time.sleep(0.1)

    def hosts(self, views: Mapping[str, Mapping[str, Any]] | None = None) -> list[Host]:
        views = self.views() if views is None else views
        hosts = []
        for vm in self.scenario.vms:
            view = views[vm.name]
            document = view.get("network_persona")
            hosts.append(
                Host(
                    name=vm.name,
                    persona_name=view.get("name"),
                    persona=parse_persona(document) if document is not None else None,
                    interfaces=tuple(i.address for i in vm.interfaces),
                    labels=dict(vm.labels),
                )
            )
        return hosts

    def overlay_fields(self) -> dict[str, frozenset[str]]:
        """The persona fields each overlay of the scenario's policy sets (all of them when it
        replaces the persona)."""
        policy = parse_policy(yaml.safe_load(self.scenario.policy.read_text()))
        found = {}
        for overlay in policy.overlays:
            fields = frozenset(overlay.changes.fields)
            if overlay.changes.remove_protocols:
                fields |= {"allowed_protocols"}
            found[overlay.name] = EVERY_FIELD if overlay.changes.persona else fields
        return found

    def probe(self, flip: Collection[tuple[str, str, ProbeKind]] = ()) -> Phase:
        """Prove the matrix with real packets in the current context; ``flip`` inverts the
        spec's expectation of those probes (to see a mismatch reported)."""
        views = self.views()
        hosts = self.hosts(views)
        spec = expected_matrix(hosts, self.scenario.probes)
        override = {
            (a, b, kind.value): not spec[(a, b, kind)]
            for a, b, kind in flip
            if spec.get((a, b, kind)) is not None
        }
        count = sum(1 for want in spec.values() if want is not None)
        with activity(self.console, f"probing every pair of VMs with {count} real probes"):
            cells = run_matrix(self.topo, self.scenario, hosts, expect_override=override)
        overlays = {vm: tuple(view.get("overlays") or ()) for vm, view in views.items()}
        return Phase(self.context(), tuple(hosts), overlays, tuple(cells))

    def context(self) -> dict[str, str]:
        """The network context the service holds."""
        items = self._call("GET", "/v1/admin/context")["items"]
        return {str(item["key"]): str(item["value"]) for item in items}

    def set_context(self, values: Mapping[str, str]) -> float:
        """Change the network context; returns the monotonic time the service acknowledged it."""
        for key, value in values.items():
            self._call("PUT", f"/v1/admin/context/{key}", {"value": value})
        return time.monotonic()

    def down(self, keep_logs: bool = False) -> list[str]:
        """Stop the processes, remove what the ledger holds; return namespaces left behind.

        With ``keep_logs`` the service's and agents' logs are moved out of the work directory
        first, to ``<workdir>-<run id>-logs`` next to it (:attr:`logs_kept`), which no lab
        command removes: the next run in the same work directory starts afresh.
        """
        self.close()
        self.processes.stop_all()
        logs = self.processes.log_path("service").parent
        if keep_logs and logs.is_dir():
            kept = self.workdir.with_name(f"{self.workdir.name}-{self.run_id}-logs")
            shutil.rmtree(kept, ignore_errors=True)
            logs.replace(kept)
            self.logs_kept = kept
        left = self.topo.destroy()
        if not left:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return left
