"""API tokens: only a SHA-256 hash of each secret is kept."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from netpersona.errors import NotFound
from netpersona.store.base import ApiToken, Role
from netpersona.store.sql.aggregate import Aggregate
from netpersona.store.sql.engine import Row, retried

__all__ = ["TokenTable", "hash_secret"]


def hash_secret(secret: str) -> str:
    # Token secrets are 256 random bits, so a plain SHA-256 cannot be brute-forced; a slow
    # password hash would only cost time on every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def token_from_row(row: Row) -> ApiToken:
    return ApiToken(row["id"], row["name"], Role(row["role"]), row["created_at"], row["created_by"])


class TokenTable(Aggregate):
    def _decode_token(self, row: Row) -> ApiToken | None:
        return self._rows.decode("tokens", row["id"], row, token_from_row)

    @retried
    def create_token(self, name: str, role: Role, actor: str) -> tuple[ApiToken, str]:
        secret = "np_" + secrets.token_urlsafe(32)
        token = ApiToken("tok-" + secrets.token_hex(6), name, role, self._clock(), actor)
        with self._database.write(f"create token {name!r}") as db:
            db.execute(
                "INSERT INTO tokens (id, name, role, hash, created_at, created_by) "
                "VALUES (?,?,?,?,?,?)",
                (token.id, name, role.value, hash_secret(secret), token.created_at, actor),
            )
            target = f"token/{token.id}"
            self._audit(db, actor, "token.create", target, before=None, after=token.to_json())
        return token, secret

    def token_for_secret(self, secret: str) -> ApiToken | None:
        with self._database.read("look up a token") as db:
            row = db.execute(
                "SELECT * FROM tokens WHERE hash = ?", (hash_secret(secret),)
            ).fetchone()
        return None if row is None else self._decode_token(row)

    def list_tokens(self) -> Sequence[ApiToken]:
        with self._database.read("list tokens") as db:
            rows = db.execute("SELECT * FROM tokens ORDER BY id").fetchall()
        return [token for token in map(self._decode_token, rows) if token is not None]

    @retried
    def revoke_token(self, token_id: str, actor: str) -> None:
        with self._database.write(f"revoke token {token_id!r}") as db:
            row = db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                raise NotFound(f"token {token_id!r} does not exist")
            db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))
            token = self._decode_token(row)  # an unreadable token can still be revoked
            self._rows.forget("tokens", token_id)
            self._audit(
                db,
                actor,
                "token.revoke",
                f"token/{token_id}",
                before=token.to_json()
                if token
                else {k: v for k, v in dict(row).items() if k != "hash"},
                after=None,
            )
