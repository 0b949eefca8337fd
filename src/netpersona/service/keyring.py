"""The service's certificate signing keys, kept in one file in the data directory.

The key file (``DATA_DIR/certificate-keys.json``, mode 0600) holds every Ed25519 key still
valid for verification, each with its private part, when it was made, and when it stops being
valid (``retire_at``; null while it is the signing key). The newest key without ``retire_at``
signs; the public set served to VMs (``GET /v1/keys``) is every key not yet retired.

Rotation (``netpersona keys rotate``) adds a new key, served in the public set at once and
signing from ``signs_from`` (``--publish-ahead`` seconds later, default 0: at once, so agents
learn the new key by their ``GET /v1/keys`` watch; give it a few minutes where agents may be cut
off from the service), and gives every older key a ``retire_at`` one overlap after that
(default: one certificate lifetime). The service re-issues every certificate with the new key as
soon as it signs, so when the old key leaves the set no certificate it signed is still current.
The file is replaced atomically (a new file renamed over it), under an advisory lock, so a
rotation while the service runs is safe; the service re-reads the file when it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import structlog

from netpersona.certs.keyfiles import generate_signing_key
from netpersona.certs.keys import MAX_KEYS, KeySet, SigningKey
from netpersona.errors import FieldError, InvalidDocument, UsageError

__all__ = ["KEY_FILE", "KeyFile", "KeyRing", "KeySource", "RingKey", "StaticKeys"]

KEY_FILE = "certificate-keys.json"

log = structlog.get_logger("netpersona.service")


@dataclass(frozen=True, slots=True)
class RingKey:
    key: SigningKey
    created_at: int
    retire_at: int | None = None  # None: valid for verification until a rotation
    signs_from: int | None = None  # None: since created_at

    def valid(self, now: float) -> bool:
        return self.retire_at is None or now < self.retire_at

    def signs(self, now: float) -> bool:
        """May sign at ``now``: valid, and published for long enough."""
        start = self.created_at if self.signs_from is None else self.signs_from
        return self.valid(now) and now >= start


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Every key in the key file, oldest first."""

    keys: tuple[RingKey, ...]

    @classmethod
    def generate(cls, now: float) -> KeyRing:
        return cls((RingKey(generate_signing_key(), int(now)),))

    @property
    def newest(self) -> SigningKey:
        """The key made by the last rotation (signing, or about to)."""
        return self.keys[-1].key

    def signer(self, now: float) -> SigningKey:
        """The newest key that may sign at ``now`` (the newest key at all if none may)."""
        signing = [k for k in self.keys if k.signs(now)]
        return (signing or list(self.keys))[-1].key

    def key_set(self, now: float) -> KeySet:
        """The public keys valid for verification at ``now``; the signer always is."""
        signer = self.signer(now).kid
        keys = KeySet()
        for ring_key in self.keys:
            if ring_key.valid(now) or ring_key.key.kid == signer:
                keys = keys.with_key(ring_key.key.public_key())
        return keys

    def rotate(
        self, now: float, overlap: int, *, publish_ahead: int = 0, kid: str | None = None
    ) -> KeyRing:
        """A new key, published at once and signing ``publish_ahead`` seconds from ``now``;
        the others stay valid for ``overlap`` seconds after that (or less, when already
        retiring sooner), and keys already retired are dropped."""
        if overlap < 0 or publish_ahead < 0:
            raise UsageError(
                f"--overlap {overlap} / --publish-ahead {publish_ahead}: must be 0 or more seconds"
            )
        start = int(now) + publish_ahead
        kept = []
        for ring_key in self.keys:
            if not ring_key.valid(now):
                continue
            retire = start + overlap
            if ring_key.retire_at is not None:
                retire = min(retire, ring_key.retire_at)
            kept.append(replace(ring_key, retire_at=retire))
        if len(kept) + 1 > MAX_KEYS:
            raise UsageError(
                f"{len(kept)} keys are still valid for verification; a rotation would make "
                f"more than {MAX_KEYS}: wait for the oldest to retire"
            )
        new = generate_signing_key(kid)
        if any(k.key.kid == new.kid for k in kept):
            raise UsageError(f"key id {new.kid!r} is already in use")
        return KeyRing((*kept, RingKey(new, int(now), signs_from=start)))

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "jwk": k.key.private_jwk(),
                    "created_at": k.created_at,
                    "signs_from": k.signs_from,
                    "retire_at": k.retire_at,
                }
                for k in self.keys
            ]
        }

    @classmethod
    def from_json(cls, document: object, source: str) -> KeyRing:
        raw = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw, list) or not raw:
            raise InvalidDocument([FieldError("/keys", "expected a list of keys")], source=source)
        keys = []
        for index, entry in enumerate(raw):
            if not isinstance(entry, dict):
                raise InvalidDocument(
                    [FieldError(f"/keys/{index}", f"{entry!r} is not a key entry")], source=source
                )
            created = entry.get("created_at")
            retire, signs = entry.get("retire_at"), entry.get("signs_from")
            if not isinstance(created, int) or not all(
                t is None or isinstance(t, int) for t in (retire, signs)
            ):
                raise InvalidDocument(
                    [
                        FieldError(
                            f"/keys/{index}",
                            f"created_at {created!r} / signs_from {signs!r} / retire_at "
                            f"{retire!r} are not times",
                        )
                    ],
                    source=source,
                )
            key = SigningKey.from_jwk(entry.get("jwk", {}))
            keys.append(RingKey(key, created, retire, signs))
        return cls(tuple(keys))


class KeySource(Protocol):
    """Where the certificate authority gets the current key ring (asked on every renewal)."""

    def current(self) -> KeyRing: ...


class StaticKeys:
    """A key ring that lives only in memory (an in-process service without a data directory)."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def current(self) -> KeyRing:
        return self.ring


class KeyFile:
    """The key file: created on first use, re-read whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ring: KeyRing | None = None
        self._seen: tuple[int, int, int] | None = None

    @classmethod
    def in_dir(cls, data_dir: Path) -> KeyFile:
        return cls(data_dir / KEY_FILE)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> KeyRing:
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidDocument(
                [FieldError("", f"cannot read {self.path}: {exc}")], source=str(self.path)
            ) from None
        return KeyRing.from_json(document, str(self.path))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, ring: KeyRing) -> None:
        """Replace the file atomically; the new file is 0600 from its creation."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(ring.to_json(), out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def load_or_create(self, now: float) -> KeyRing:
        """The ring in the file; a fresh one (one new key) written first if there is none."""
        with self._locked():
            if self._stamp() is None:
                self._write(KeyRing.generate(now))
                log.warning("certificate signing key created", path=str(self.path))
            self._seen, self._ring = self._stamp(), self._read()
        return self._ring

    def rotate(
        self, now: float, overlap: int, *, publish_ahead: int = 0, kid: str | None = None
    ) -> KeyRing:
        with self._locked():
            if self._stamp() is None:
                raise UsageError(f"no key file at {self.path}: start the service once first")
            ring = self._read().rotate(now, overlap, publish_ahead=publish_ahead, kid=kid)
            self._write(ring)
            self._seen, self._ring = self._stamp(), ring
        return ring

    def current(self) -> KeyRing:
        """The ring as the file has it now; a file that cannot be read keeps the last ring."""
        stamp = self._stamp()
        if self._ring is None or stamp != self._seen:
            try:
                ring = self._read()
            except InvalidDocument as exc:
                if self._ring is None:
                    raise
                log.error("key file unreadable, keeping the keys in use", error=str(exc))
                return self._ring
            if self._ring is not None:
                log.info("certificate keys reloaded", path=str(self.path), newest=ring.newest.kid)
            self._seen, self._ring = stamp, ring
        return self._ring
