"""Issued persona certificates: the newest issued to each instance, ever (the row outlives
the instance, so ``seq`` keeps growing if the id comes back)."""

from __future__ import annotations

from collections.abc import Sequence

from netpersona.store.base import IssuedCertificate
from netpersona.store.sql.aggregate import Aggregate
from netpersona.store.sql.engine import Row, from_row, retried

__all__ = ["CertificateTable"]


def certificate_from_row(row: Row) -> IssuedCertificate:
    return from_row(IssuedCertificate, row, seq=int, issued_at=int, expires_at=int)


class CertificateTable(Aggregate):
    def certificates(self) -> Sequence[IssuedCertificate]:
        with self._database.read("read issued certificates") as db:
            rows = db.execute("SELECT * FROM certificates ORDER BY instance_id").fetchall()
        decoded = (
            self._rows.decode("certificates", r["instance_id"], r, certificate_from_row)
            for r in rows
        )
        return [certificate for certificate in decoded if certificate is not None]

    @retried
    def save_certificates(self, issued: Sequence[IssuedCertificate]) -> None:
        """Record newly issued certificates; a row never goes back to a lower ``seq``."""
        if not issued:
            return
        with self._database.write(f"record {len(issued)} issued certificate(s)") as db:
            db.executemany(
                "INSERT INTO certificates (instance_id, seq, summary, token, issued_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET"
                " seq = excluded.seq, summary = excluded.summary, token = excluded.token,"
                " issued_at = excluded.issued_at, expires_at = excluded.expires_at"
                " WHERE excluded.seq > certificates.seq",
                [
                    (c.instance_id, c.seq, c.summary, c.token, c.issued_at, c.expires_at)
                    for c in issued
                ],
            )
            for certificate in issued:
                self._changed(db, "certificate", certificate.instance_id)
