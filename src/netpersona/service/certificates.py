"""The certificate authority: one signed persona certificate per instance (spec section 8).

:meth:`CertificateAuthority.attach` takes a :class:`FleetView` and returns it with each
instance's certificate view (``GET /v1/instance/certificate``) and the public key set view
(``GET /v1/keys``). A certificate is re-issued, with a higher ``seq``, when what it vouches
for changes (addresses, effective persona name and version, mode, profile, priority, DSCP
override, labels), when the signing key changes, and when less than a third of its lifetime is
left (or a little more, see :meth:`CertificateAuthority.due`); otherwise the one issued before
is served again, byte for byte (so its ETag holds). Every certificate issued is saved in the
store before it is served: ``seq`` keeps growing across restarts, and a restart serves the same
certificates.

``seq`` is the larger of the previous one plus one and the issue time in milliseconds, so it
grows even if the store were lost. Blocking (store writes): runs in a worker thread, under the
fleet's build lock.

A view may be published before all of its certificates are issued (a persona change held by
thousands is signed in batches, after the new personas are served). Each certificate view
(:class:`CertificateView`) names the instance record and effective persona it certifies, so
:meth:`CertificateAuthority.stale` tells, without signing, whether the certificate a view
serves certifies that view's answer; :meth:`CertificateAuthority.certify` then issues exactly
those (the fleet does so when a VM asks for one, and for the watched ones before a view is
published), so a certificate is never older than the answer it certifies.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from ipaddress import ip_address

import structlog

from netpersona.certs import PersonaCertificate, certificate_claims, issue_certificate
from netpersona.certs.keys import SigningKey
from netpersona.errors import InvalidDocument
from netpersona.records import EffectivePersona
from netpersona.service.keyring import KeySource
from netpersona.service.views import NO_CERTIFICATE, FleetView, View
from netpersona.store.base import Instance, IssuedCertificate, Store

__all__ = ["DEFAULT_LIFETIME", "NO_CERTIFICATE", "CertificateAuthority", "CertificateView"]

DEFAULT_LIFETIME = 3600

log = structlog.get_logger("netpersona.service")

_TIMES = ("iat", "exp", "seq")


@dataclass(frozen=True, slots=True)
class CertificateView(View):
    """A certificate answer, and what it certifies: the instance record and effective persona
    it was issued for (the same bytes may be served again for a later record that certifies
    the same, with that record)."""

    instance: Instance
    version: EffectivePersona


def _same(a: object, b: object) -> bool:
    # By identity first: the store and the resolver hand out the same objects for what did
    # not change; a re-read of the whole fleet may give equal ones.
    return a is b or a == b


@dataclass(frozen=True, slots=True)
class _Summary:
    instance: Instance
    version: EffectivePersona
    kid: str
    cert: PersonaCertificate | None  # None: nothing to certify (no valid persona)
    text: str


class CertificateAuthority:
    def __init__(
        self,
        store: Store,
        keys: KeySource,
        *,
        lifetime: int = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime < 3:
            raise ValueError(f"certificate lifetime {lifetime}: at least 3 seconds")
        self.store = store
        self.keys = keys
        self.lifetime = lifetime
        self.clock = clock
        self._issued = {c.instance_id: c for c in store.certificates()}
        self._views: dict[str, tuple[int, CertificateView]] = {}
        self._summaries: dict[str, _Summary] = {}
        self._refused: set[str] = set()
        self._keys_view: View | None = None
        # What the last attach saw of each instance (by identity: the store and the resolver
        # hand out the same objects for what did not change), the signing key it used, and
        # the earliest time a served certificate falls due: a write or a renewal tick looks
        # only at the instances that changed, unless a key change or the time needs them all.
        self._basis: dict[str, tuple[Instance, EffectivePersona | None]] = {}
        self._kid: str | None = None
        self._next_due = 0.0
        self._maps: tuple[Mapping[str, Instance], Mapping[str, EffectivePersona]] | None = None
        self._behind = False  # the last attach stopped at its budget: more are due

    @staticmethod
    def due_at(issued: IssuedCertificate) -> float:
        """When less than a third of the certificate's lifetime is left, or a little more:
        each instance renews at its own point between a half and a third left (a hash of its
        id), so certificates issued together (a start, a rotation) do not all renew together."""
        lifetime = issued.expires_at - issued.issued_at
        spread = hashlib.blake2b(issued.instance_id.encode(), digest_size=2).digest()
        fraction = 1 / 3 + int.from_bytes(spread) / 65536 / 6
        return issued.expires_at - lifetime * fraction

    def _summary(self, view: FleetView, instance: Instance, signer: SigningKey) -> _Summary | None:
        version = view.persona_of(instance.id)
        if version is None:
            return None
        persona = version.persona
        cached = self._summaries.get(instance.id)
        if (
            cached is not None
            and cached.instance is instance
            and cached.version is version
            and cached.kid == signer.kid
        ):
            return cached
        cert = None
        text = ""
        if persona is not None:
            cert = PersonaCertificate(
                instance=instance.id,
                addresses=tuple(ip_address(a) for a in instance.addresses),
                persona=version.name,
                persona_version=version.version,
                mode=persona.communication_mode,
                profile=persona.security_profile,
                priority=persona.priority,
                labels=instance.labels,
                issued_at=0,
                expires_at=1,
                seq=0,
                key_id=signer.kid,
                dscp=persona.qos.dscp,
            )
            claims = {k: v for k, v in certificate_claims(cert).items() if k not in _TIMES}
            claims["kid"] = signer.kid
            text = json.dumps(claims, sort_keys=True, separators=(",", ":"))
        summary = _Summary(instance, version, signer.kid, cert, text)
        self._summaries[instance.id] = summary
        return summary

    def _issue(self, summary: _Summary, signer: SigningKey, now: int) -> IssuedCertificate | None:
        assert summary.cert is not None
        last = self._issued.get(summary.instance.id)
        seq = max(1 if last is None else last.seq + 1, int(self.clock() * 1000))
        cert = replace(summary.cert, issued_at=now, expires_at=now + self.lifetime, seq=seq)
        try:
            token = issue_certificate(cert, signer)
        except InvalidDocument as exc:
            if summary.text not in self._refused:
                self._refused.add(summary.text)
                log.warning(
                    "cannot certify instance",
                    vm=summary.instance.id,
                    errors=[str(e) for e in exc.errors],
                )
            return None
        return IssuedCertificate(
            summary.instance.id, seq, summary.text, token, now, now + self.lifetime
        )

    @property
    def behind(self) -> bool:
        """Whether the last :meth:`attach` left certificates due (it reached its budget)."""
        return self._behind

    def attach(
        self,
        view: FleetView,
        budget: int | None = None,
        candidates: Collection[str] | None = None,
    ) -> tuple[FleetView, bool]:
        """``view`` with certificate and key views, issuing what is due (at most ``budget``
        certificates: the rest keep the one issued before, see :attr:`behind`, and the next
        call goes on with them); and whether any certificate or the key set differs from
        those ``view`` carries. ``candidates``: every instance that may have changed since
        the last call (written, deleted, or a new effective persona), so that only they are
        looked at; None: any may have (a pass over the fleet)."""
        now_f = self.clock()
        ring = self.keys.current()
        signer = ring.signer(now_f)
        keys_view = View.of(ring.key_set(now_f).to_jwks())
        changed = view.keys is None or keys_view.etag != view.keys.etag
        self._keys_view = keys_view

        # While behind, only a new key starts over; time is looked at once caught up.
        full = signer.kid != self._kid or (now_f > self._next_due and not self._behind)
        maps = self._maps
        if (
            not full
            and not self._behind
            and maps
            and maps[0] is view.instances
            and maps[1] is view.effective
        ):
            # The very fleet data of the last call (a renewal tick): nothing to look at.
            return replace(view, keys=keys_view), changed
        self._maps = (view.instances, view.effective)
        if full:
            self._basis.clear()
        elif candidates is not None and not self._behind:
            return self._attach_some(view, candidates, signer, now_f, budget, keys_view, changed)
        certificates = dict(view.certificates)
        for gone in [i for i in certificates if i not in view.instances]:
            del certificates[gone]
        fresh = self._certify(view, certificates, signer, now_f, budget)
        self._forget_gone(view)
        # Saved before anything is served: a restart never serves a lower seq.
        self.store.save_certificates(fresh)
        for issued in fresh:
            self._issued[issued.instance_id] = issued
        if fresh:
            log.info("certificates issued", count=len(fresh))
        self._kid = signer.kid
        self._next_due = self._earliest_due(certificates if full else {}, fresh, full)
        changed = changed or fresh != [] or certificates.keys() != view.certificates.keys()
        return replace(view, certificates=certificates, keys=keys_view), changed

    def _attach_some(
        self,
        view: FleetView,
        candidates: Collection[str],
        signer: SigningKey,
        now_f: float,
        budget: int | None,
        keys_view: View,
        changed: bool,
    ) -> tuple[FleetView, bool]:
        """:meth:`attach` looking only at ``candidates`` (nothing else changed, the key did
        not, and no served certificate is due)."""
        certificates = dict(view.certificates)
        for gone in [i for i in candidates if i not in view.instances]:
            certificates.pop(gone, None)
            for cache in (self._summaries, self._views, self._basis):
                cache.pop(gone, None)
        present = [i for i in candidates if i in view.instances]
        fresh = self._certify(view, certificates, signer, now_f, budget, present)
        self.store.save_certificates(fresh)
        for issued in fresh:
            self._issued[issued.instance_id] = issued
        if fresh:
            log.info("certificates issued", count=len(fresh))
        self._next_due = self._earliest_due({}, fresh, False)
        changed = changed or any(
            certificates.get(i) is not view.certificates.get(i) for i in candidates
        )
        return replace(view, certificates=certificates, keys=keys_view), changed

    def _certify(
        self,
        view: FleetView,
        certificates: dict[str, View],
        signer: SigningKey,
        now_f: float,
        budget: int | None = None,
        only: Collection[str] | None = None,
    ) -> list[IssuedCertificate]:
        """Bring ``certificates`` up to date for every instance that changed since the last
        call (of ``only``, when given), issuing at most ``budget``; the certificates that had
        to be issued for that."""
        fresh: list[IssuedCertificate] = []
        self._behind = False
        for instance_id in view.instances if only is None else only:
            instance = view.instances[instance_id]
            version = view.effective.get(instance_id)
            if self._seen_before(instance_id, instance, version):
                continue
            if budget is not None and len(fresh) >= budget:
                # Left for the next call, which sees it as changed; its old one is served.
                del self._basis[instance_id]
                self._behind = True
                continue
            self._serve(view, instance, signer, now_f, certificates, fresh)
        return fresh

    def _serve(
        self,
        view: FleetView,
        instance: Instance,
        signer: SigningKey,
        now_f: float,
        certificates: dict[str, View],
        fresh: list[IssuedCertificate],
    ) -> None:
        """Put ``instance``'s current certificate in ``certificates`` (none when it cannot be
        certified), and in ``fresh`` when it had to be issued now."""
        summary = self._summary(view, instance, signer)
        served = None
        if summary is not None and summary.cert is not None:
            served = self._current(summary, signer, now_f)
        if served is None or summary is None:
            certificates.pop(instance.id, None)
            return
        if served is not self._issued.get(instance.id):  # issued just now
            fresh.append(served)
        # Replaced in place: a dictionary with no removed entries copies at memory speed.
        certificates[instance.id] = self._view_of(served, summary)

    def _seen_before(
        self, instance_id: str, instance: Instance, version: EffectivePersona | None
    ) -> bool:
        """Whether the last call saw the same instance and effective version (then its
        certificate stands); records this call's."""
        seen = self._basis.get(instance_id)
        if seen is not None and seen[0] is instance and seen[1] is version:
            return True
        self._basis[instance_id] = (instance, version)
        return False

    def _current(
        self, summary: _Summary, signer: SigningKey, now_f: float
    ) -> IssuedCertificate | None:
        """The certificate to serve for ``summary``: the last one issued while it still
        certifies the same and is not due, else a new one; None when it cannot be certified."""
        last = self._issued.get(summary.instance.id)
        if last is not None and last.summary == summary.text and now_f <= self.due_at(last):
            return last
        return self._issue(summary, signer, int(now_f))

    def _forget_gone(self, view: FleetView) -> None:
        for cache in (self._summaries, self._views, self._basis):
            if len(cache) > len(view.instances):
                for gone in [i for i in cache if i not in view.instances]:
                    del cache[gone]

    def _earliest_due(
        self, served: Mapping[str, View], fresh: list[IssuedCertificate], full: bool
    ) -> float:
        """When the next certificate falls due: of all served after a full pass, else of
        those just issued and the earliest known before."""
        due = [self.due_at(self._issued[i]) for i in served]
        due.extend(self.due_at(issued) for issued in fresh)
        return min([*due, float("inf") if full else self._next_due])

    def _view_of(self, issued: IssuedCertificate, summary: _Summary) -> CertificateView:
        """The answer serving ``issued``, for the record and persona of ``summary`` (which it
        certifies: the same bytes, and so the same ETag, for a record that changed in what a
        certificate does not bind)."""
        cached = self._views.get(issued.instance_id)
        if cached is None or cached[0] != issued.seq:
            body = View.of(
                {"certificate": issued.token, "expires_at": issued.expires_at, "seq": issued.seq}
            )
            found = CertificateView(body.body, body.etag, summary.instance, summary.version)
        else:
            found = cached[1]
            if found.instance is summary.instance and found.version is summary.version:
                return found
            found = CertificateView(found.body, found.etag, summary.instance, summary.version)
        self._views[issued.instance_id] = (issued.seq, found)
        return found

    def stale(self, view: FleetView, instance_id: str) -> bool:
        """Whether the certificate ``view`` serves to ``instance_id`` certifies something else
        than the instance and effective persona ``view`` serves it (a view published before
        its certificates were issued). Reads only ``view``: safe on the event loop."""
        instance = view.instances.get(instance_id)
        if instance is None:
            return False
        version = view.effective.get(instance_id)
        held = view.certificates.get(instance_id)
        if isinstance(held, CertificateView):
            return not (_same(held.instance, instance) and _same(held.version, version))
        # None held: stale when there is a persona to certify (one that cannot be certified
        # is tried again, and logged once).
        return version is not None and version.persona is not None

    def certify(self, view: FleetView, instance_ids: Collection[str]) -> FleetView:
        """``view`` with the certificates of ``instance_ids`` brought up to date now: issued
        (and saved, before anything serves them) when the one held certifies something else,
        else the one held. The passes of :meth:`attach` then find them current."""
        now_f = self.clock()
        signer = self.keys.current().signer(now_f)
        certificates = dict(view.certificates)
        fresh: list[IssuedCertificate] = []
        for instance_id in instance_ids:
            instance = view.instances.get(instance_id)
            if instance is not None:
                self._serve(view, instance, signer, now_f, certificates, fresh)
        self.store.save_certificates(fresh)
        for issued in fresh:
            self._issued[issued.instance_id] = issued
        if fresh:
            log.info("certificates issued", count=len(fresh), on="demand")
            self._next_due = min(self._next_due, *(self.due_at(i) for i in fresh))
        return replace(view, certificates=certificates)
