"""The agent's metrics: each source mapped to its series, rendered in a format promtool takes,
served over a real socket and written to a real file."""

from __future__ import annotations

import asyncio
import os
import time
from ipaddress import ip_address
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from netpersona.agent.config import AgentConfig, check_metrics_textfile, parse_metrics_listen
from netpersona.agent.control import ControlChannel
from netpersona.agent.metrics import AgentMetrics
from netpersona.agent.metrics_export import MetricsEndpoint, write_textfile
from netpersona.agent.status import StatusRecord
from netpersona.certs import Verifier
from netpersona.dataplane.kernel import Kernel
from netpersona.errors import KernelError, UsageError
from netpersona.gossip import GossipNode
from netpersona.gossip.wire import Certs, encode
from netpersona.testing.certs import fixed_key, key_set, make_certificate, signed
from tests.promtool import check_metrics

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class TableKernel:
    """Answers only what the metrics read: the table's listing (``nft -j list table``) and its
    counters."""

    def __init__(self, listing: list[dict[str, Any]] | None) -> None:
        self.listing = listing

    def nft_table(self) -> list[dict[str, Any]] | None:
        if self.listing is None:
            raise KernelError("nft -j list table inet netpersona: exit 1: no nft")
        return self.listing

    def nft_counters(self) -> list[dict[str, Any]] | None:
        """``nft -j list counters table ...``: the same objects, the counters among them."""
        return self.nft_table()


def series(text: bytes) -> Series:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def token(vm: str, address: str, seq: int) -> bytes:
    cert = make_certificate(vm, (address,), persona="web", seq=seq, issued_at=int(time.time()))
    return signed(cert).encode()


def make(tmp_path: Path, listing: list[dict[str, Any]] | None) -> tuple[AgentMetrics, Any]:
    config = AgentConfig(metadata_url="http://169.254.169.254", state_dir=tmp_path)
    status = StatusRecord(tmp_path)
    control = ControlChannel(config, status, lambda: None)
    metrics = AgentMetrics(status, control, cast(Kernel, TableKernel(listing)))
    status.on_outcome = metrics.observe_outcome
    return metrics, control


DROPS: list[dict[str, Any]] = [
    {"table": {"family": "inet", "name": "netpersona"}},
    {"counter": {"family": "inet", "table": "netpersona", "name": "drop_not_peer", "packets": 7,
                 "bytes": 420}},
    {"counter": {"family": "inet", "table": "netpersona", "name": "drop_protocol", "packets": 0,
                 "bytes": 0}},
]  # fmt: skip


def test_passes_persona_and_kernel_drops(tmp_path: Path) -> None:
    metrics, _ = make(tmp_path, DROPS)
    record = metrics.status.record
    record.persona, record.version, record.digest = "web", 3, "5f0c3a9e1b2d77"
    metrics.status.outcome("applied", None)
    metrics.status.outcome("unchanged", None)
    record.version = 4
    metrics.status.outcome("failed", "apply failed")
    asyncio.run(metrics.refresh())
    got = series(metrics.render())
    assert got[("netpersona_agent_passes_total", (("result", "applied"),))] == 1
    assert got[("netpersona_agent_passes_total", (("result", "unchanged"),))] == 1
    assert got[("netpersona_agent_passes_total", (("result", "failed"),))] == 1
    assert got[("netpersona_agent_passes_total", (("result", "removed"),))] == 0
    # A failed pass leaves the version in force as it was, and says it is not converged.
    assert got[("netpersona_agent_persona_version", ())] == 3
    assert got[("netpersona_agent_persona_info", (("digest", "5f0c3a9e1b2d"), ("persona", "web")))]
    assert got[("netpersona_agent_converged", ())] == 0
    assert got[("netpersona_agent_nft_dropped_packets_total", (("reason", "not_peer"),))] == 7
    assert got[("netpersona_agent_nft_dropped_bytes_total", (("reason", "not_peer"),))] == 420
    assert got[("netpersona_agent_nft_dropped_packets_total", (("reason", "protocol"),))] == 0
    assert got[("netpersona_agent_drop_counters_readable", ())] == 1
    assert got[("netpersona_agent_last_change_timestamp_seconds", ())] > 0
    assert ("netpersona_build_info", ()) not in got  # it has labels: version, python
    assert any(name == "netpersona_build_info" for name, _ in got)
    assert any(name.startswith("process_") for name, _ in got)

    metrics.status.outcome("removed", None)
    got = series(metrics.render())
    assert ("netpersona_agent_persona_version", ()) not in got
    assert got[("netpersona_agent_converged", ())] == 1


def test_unreadable_drop_counters_are_said_not_fatal(tmp_path: Path) -> None:
    metrics, _ = make(tmp_path, None)
    asyncio.run(metrics.refresh())
    got = series(metrics.render())
    assert got[("netpersona_agent_drop_counters_readable", ())] == 0
    assert not [k for k in got if k[0] == "netpersona_agent_nft_dropped_packets_total"]


def test_gossip_counters_by_reason(tmp_path: Path) -> None:
    metrics, control = make(tmp_path, [])
    now = time.time()
    node = GossipNode(
        address=ip_address("10.0.0.1"), verifier=Verifier(key_set(fixed_key("k1"))), now=now
    )
    control.node = node
    newer, older = token("vm-2", "10.0.0.2", 5), token("vm-2", "10.0.0.2", 4)
    forged = newer[:-6] + (b"AAAAAA" if not newer.endswith(b"AAAAAA") else b"BBBBBB")
    datagrams = [encode(Certs((c,))) for c in (newer, newer, older, forged)]
    datagrams.append(b"\x00" * 1500)
    for data in datagrams:
        node.receive(data, ip_address("10.0.0.2"), now)
    got = series(metrics.render())

    def rejected(reason: str) -> float:
        return got[("netpersona_agent_gossip_certificates_rejected_total", (("reason", reason),))]

    assert got[("netpersona_agent_gossip_certificates_accepted_total", ())] == 1
    assert rejected("duplicate") == 1
    assert rejected("stale") == 1  # replayed
    assert rejected("bad_signature") == 1  # forged
    assert rejected("expired") == 0  # every reason is there from the start
    dropped = ("netpersona_agent_gossip_drops_total", (("reason", "oversized"),))
    assert got[dropped] == 1
    received = ("netpersona_agent_gossip_datagrams_total", (("direction", "received"),))
    assert got[received] == 5
    in_bytes = ("netpersona_agent_gossip_bytes_total", (("direction", "received"),))
    assert got[in_bytes] == sum(len(d) for d in datagrams)
    assert got[("netpersona_agent_gossip_peers", ())] == 1
    # A counter the node adds that has no metric of its own is still exported.
    node.counters["some_new_event"] += 2
    got = series(metrics.render())
    assert got[("netpersona_agent_gossip_events_total", (("event", "some_new_event"),))] == 2


@pytest.mark.subprocess  # promtool
def test_what_is_rendered_passes_the_promtool_rules(tmp_path: Path) -> None:
    metrics, control = make(tmp_path, DROPS)
    control.node = GossipNode(
        address=ip_address("10.0.0.1"), verifier=Verifier(key_set(fixed_key("k1")))
    )
    metrics.status.watch_ok("persona")
    metrics.status.outcome("applied", None)
    metrics.observe_change("apply", "ok", 0.2)
    asyncio.run(metrics.refresh())
    for with_process in (True, False):
        text = metrics.render(with_process=with_process).decode()
        assert check_metrics(text) == []
        assert ("process_cpu_seconds_total" in text) is with_process
    text = metrics.render().decode()
    assert 'netpersona_agent_watch_state{state="ok",view="persona"} 1.0' in text
    assert 'netpersona_agent_kernel_change_duration_seconds_count{operation="apply",' in text


@pytest.mark.subprocess  # promtool
def test_the_endpoint_answers_metrics_and_nothing_else(tmp_path: Path) -> None:
    metrics, _ = make(tmp_path, DROPS)

    async def scenario() -> None:
        endpoint = MetricsEndpoint(metrics, "127.0.0.1", 0)
        await endpoint.start()
        url = f"http://127.0.0.1:{endpoint.port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                ok = await client.get("/metrics")
                assert ok.status_code == 200
                assert ok.headers["content-type"].startswith("text/plain; version=")
                assert check_metrics(ok.text) == []
                assert "netpersona_agent_nft_dropped_packets_total" in ok.text
                assert (await client.get("/other")).status_code == 404
                refused = await client.post("/metrics")
                assert refused.status_code == 405
                assert refused.headers["allow"] == "GET, HEAD"
                head = await client.head("/metrics")
                assert head.status_code == 200
                assert head.content == b""
            # A client that sends garbage, or nothing, is closed on.
            reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
            writer.write(b"NONSENSE\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 400")
            writer.close()
        finally:
            await endpoint.close()

    asyncio.run(scenario())


def test_the_textfile_is_replaced_whole_and_readable_by_node_exporter(tmp_path: Path) -> None:
    path = tmp_path / "netpersona.prom"
    old = os.umask(0o077)
    try:
        write_textfile(path, b"# first\n")
        write_textfile(path, b"# second\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"# second\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["netpersona.prom"]


def test_metrics_options_are_checked(tmp_path: Path) -> None:
    assert parse_metrics_listen("127.0.0.1:9477") == ("127.0.0.1", 9477)
    assert parse_metrics_listen("[::1]:9477") == ("::1", 9477)
    for bad in ("9477", "localhost:9477", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(UsageError, match="--metrics-listen"):
            parse_metrics_listen(bad)
    with pytest.raises(UsageError, match=r"\.prom"):
        check_metrics_textfile(tmp_path / "metrics.txt")
    with pytest.raises(UsageError, match="does not exist"):
        check_metrics_textfile(tmp_path / "nowhere" / "netpersona.prom")
    assert check_metrics_textfile(tmp_path / "n.prom") == tmp_path / "n.prom"


def test_a_defect_in_rendering_is_a_500_and_the_endpoint_lives_on(tmp_path: Path) -> None:
    metrics, _ = make(tmp_path, DROPS)
    broken = {"yes": True}
    render = metrics.render

    def flaky(*, with_process: bool = True) -> bytes:
        if broken["yes"]:
            raise RuntimeError("a collector's defect")
        return render(with_process=with_process)

    metrics.render = flaky  # type: ignore[method-assign]

    async def scenario() -> None:
        endpoint = MetricsEndpoint(metrics, "127.0.0.1", 0)
        await endpoint.start()
        try:
            url = f"http://127.0.0.1:{endpoint.port}/metrics"
            async with httpx.AsyncClient(timeout=30) as client:
                assert (await client.get(url)).status_code == 500
                broken["yes"] = False
                assert (await client.get(url)).status_code == 200
        finally:
            await endpoint.close()

    asyncio.run(scenario())
