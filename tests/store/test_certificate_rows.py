"""The store's record of issued persona certificates: one row per instance, seq never lowered."""

from __future__ import annotations

from netpersona.store import IssuedCertificate
from tests.store.conftest import Database


def cert(instance: str, seq: int, token: str = "t") -> IssuedCertificate:
    return IssuedCertificate(instance, seq, f"summary-{seq}", token, 100, 200)


def test_rows_survive_a_reopen_and_a_lower_seq_never_replaces_a_higher(
    database: Database,
) -> None:
    store = database.open()
    store.save_certificates([cert("a", 5, "five"), cert("b", 1)])
    store.save_certificates([cert("a", 3, "three")])  # out of order: ignored
    store.save_certificates([cert("a", 7, "seven")])
    store.save_certificates([])
    store.close()

    store = database.open()
    try:
        assert {c.instance_id: (c.seq, c.token) for c in store.certificates()} == {
            "a": (7, "seven"),
            "b": (1, "t"),
        }
    finally:
        store.close()
