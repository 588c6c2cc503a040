"""A thin ACME (RFC 8555) client on the ``acme`` library: accounts, orders, challenges, finalize, ARI, revoke.

All JWS signing is the library's. What is added here: encrypted account keys stored on ``AcmeAccount``,
registration once per account (EAB when configured), ``replaces`` (RFC 9773) and profiles on new orders,
polling without fixed sleeps (short, growing intervals that honour ``Retry-After``), and one error type,
``AcmeError``, carrying the CA's problem type and ``Retry-After`` so the caller can back off correctly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import josepy as jose
import requests
from acme import challenges, errors, messages
from acme.client import ClientNetwork, ClientV2
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.db import transaction

from certificates.models import AcmeAccount

logger = logging.getLogger(__name__)

USER_AGENT = "gateway-worker (acme-python)"
RATE_LIMITED = "urn:ietf:params:acme:error:rateLimited"
# Problem types that mean "asking again with the same input will not help soon".
PERMANENT_TYPES = {
    "urn:ietf:params:acme:error:rejectedIdentifier",
    "urn:ietf:params:acme:error:malformed",
    "urn:ietf:params:acme:error:unsupportedIdentifier",
    "urn:ietf:params:acme:error:caa",
    "urn:ietf:params:acme:error:badCSR",
}


class LocalError(StrEnum):
    """Error kinds found here rather than sent by the CA (``AcmeOrder.error_type`` holds these or the CA's
    problem type)."""

    ACCOUNT_KEY = "local:account-key"
    BAD_DOMAIN = "local:bad-domain"
    CHALLENGE_TYPE = "local:challenge-type"
    DEADLINE = "local:deadline"
    DNS = "local:dns"
    DNS_CONFIG = "local:dns-config"
    EAB = "local:eab"
    NO_ISSUER = "local:no-issuer"
    NOT_ACME = "local:not-acme"
    PROFILE = "local:profile"
    PUSH = "local:push"
    TIMEOUT = "local:timeout"
    VALIDATION = "local:validation"  # followed by ":<reason>" from x509.CertificateValidationError
    WILDCARD_HTTP01 = "local:wildcard-http01"
    CLIENT = "client"  # the ACME library refused or could not parse something
    CONNECTION = "connection"  # the CA could not be reached


# The request itself is wrong: asking again (or serving a temporary certificate) only hides the mistake.
BAD_INPUT = frozenset({LocalError.BAD_DOMAIN, LocalError.WILDCARD_HTTP01, LocalError.DNS_CONFIG,
                       LocalError.NO_ISSUER, LocalError.PROFILE})


class AcmeError(Exception):
    """An ACME step failed. ``error_type`` is the CA's problem type (or a local one), ``retry_after`` when
    the CA said when to come back."""

    def __init__(self, message: str, error_type: str = "", retry_after: dt.datetime | None = None,
                 permanent: bool = False) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.retry_after = retry_after
        self.permanent = permanent or error_type in PERMANENT_TYPES


class ReplacesRejected(AcmeError):
    """The CA refused the order because of ``replaces`` (the caller retries without it)."""


class NewOrderWithExtras(messages.NewOrder):
    """``newOrder`` with the RFC 9773 ``replaces`` field (the library's NewOrder predates it)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


class _Network(ClientNetwork):
    """Remembers the last response so a problem document's ``Retry-After`` header is not lost."""

    last_response: requests.Response | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super()._send_request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            raise AcmeError(f"cannot reach the ACME server at {url}: {exc.__class__.__name__}: {exc}",
                            error_type=LocalError.CONNECTION) from exc
        self.last_response = response
        return response


def generate_account_key() -> str:
    """A new ECDSA P-256 account key as PKCS#8 PEM (ES256 is accepted by every CA we target)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _jwk_and_alg(key_pem: str) -> tuple[jose.JWK, jose.JWASignature]:
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}[key.curve.key_size]
        return jose.JWKEC(key=key), alg
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    raise AcmeError("account key must be EC or RSA", error_type=LocalError.ACCOUNT_KEY, permanent=True)


def _retry_after(response: requests.Response | None) -> dt.datetime | None:
    if response is None or "Retry-After" not in response.headers:
        return None
    naive = ClientV2.retry_after(response, 60)  # local naive time, as the library computes it
    return naive.astimezone(dt.UTC)


def trust_for(account: AcmeAccount) -> str | bool:
    """What ``requests`` verifies the directory's HTTPS against: the account's bundle, the setting, or the
    system store."""
    return account.tls_ca_bundle or settings.ACME_CA_BUNDLE or True


@dataclass
class RenewalInfo:
    """An RFC 9773 answer: the suggested window and when the CA wants to be asked again (None: not said)."""

    window: tuple[dt.datetime, dt.datetime]
    retry_after: dt.datetime | None


@dataclass
class Challenge:
    """One challenge to satisfy for one identifier of an order."""

    domain: str
    wildcard: bool
    type: str
    token: str
    key_authorization: str  # HTTP-01: the file body; DNS-01: the key authorization (TXT value below)
    dns_txt_value: str
    dns_record_name: str
    body: messages.ChallengeBody


@dataclass
class OrderState:
    url: str
    status: str
    authorizations: list[str]
    finalize_url: str
    certificate_url: str | None
    error: str
    error_type: str
    expires: dt.datetime | None
    retry_hint: dt.datetime | None = None  # the CA's Retry-After on the answer that produced this state


def _call(net: _Network, fn: Any, *args: Any, what: str, **kwargs: Any) -> Any:
    """Run one library call, turning every failure into a specific ``AcmeError``."""
    try:
        return fn(*args, **kwargs)
    except AcmeError:
        raise
    except messages.Error as exc:
        retry = _retry_after(net.last_response)
        raise AcmeError(f"{what}: {exc.typ}: {exc.detail or exc.description or ''}".rstrip(": "),
                        error_type=str(exc.typ or ""), retry_after=retry) from exc
    except errors.ConflictError as exc:
        response = net.last_response
        if response is None or response.status_code != 409:
            raise  # new_account's "key already registered" (a 200 with Location): _register wants it
        # the library raises on any 409 before reading its problem document (RFC 9773 answers a refused
        # ``replaces`` with 409 alreadyReplaced): keep the CA's type and detail
        try:
            problem = messages.Error.from_json(response.json())
        except (ValueError, jose.DeserializationError):
            problem = messages.Error(typ="urn:ietf:params:acme:error:conflict", detail=response.text[:300])
        raise AcmeError(f"{what}: {problem.typ}: {problem.detail or problem.description or ''}".rstrip(": "),
                        error_type=str(problem.typ or ""), retry_after=_retry_after(response)) from exc
    except (errors.Error, ValueError, jose.DeserializationError) as exc:
        raise AcmeError(f"{what}: {exc.__class__.__name__}: {exc}", error_type=LocalError.CLIENT) from exc


# Clients kept per thread for ``AcmeClient.reuse``: a worker thread renewing one certificate after another keeps its
# directory, its HTTPS connection to the CA and its spare nonces instead of starting over for each order.
_kept = threading.local()
# How long a kept client trusts its copy of the directory (a CA may change its endpoints, terms or profiles).
DIRECTORY_REFRESH_SECONDS = 600.0


def _account_fingerprint(account: AcmeAccount) -> str:
    """What a kept client was made from: any change to the account's CA, key, registration or trust makes a new
    client."""
    text = "\0".join([account.directory_url, account.key_pem or "", account.account_url or "",
                      str(trust_for(account))])
    return hashlib.sha256(text.encode()).hexdigest()


class AcmeClient:
    """One account at one directory. Not thread-safe (nonce pool): use one per order/thread.

    Made by ``AcmeClient.connect(account)``, which fetches the directory; the constructor itself only holds
    what it is given (no network, no database)."""

    def __init__(self, account: AcmeAccount, key: jose.JWK, net: _Network, directory: messages.Directory) -> None:
        self.account = account
        self.key = key
        self.net = net
        self.directory = directory
        self.client = ClientV2(directory, net)
        if account.account_url:
            self.net.account = messages.RegistrationResource(body=messages.Registration(),
                                                             uri=account.account_url)

    @classmethod
    def connect(cls, account: AcmeAccount, timeout: int = 30) -> AcmeClient:
        """Fetch the account's directory and return a client for it. Remembers on the account whether the
        directory offers renewalInfo, so the ARI refresh job selects only accounts whose CA offers it."""
        if not account.key_pem:
            raise AcmeError(f"ACME account {account.name} has no key", error_type=LocalError.ACCOUNT_KEY,
                            permanent=True)
        key, alg = _jwk_and_alg(account.key_pem)
        net = _Network(key, alg=alg, verify_ssl=trust_for(account),  # type: ignore[arg-type]
                       user_agent=USER_AGENT, timeout=timeout)
        directory = _call(net, ClientV2.get_directory, account.directory_url, net, what="fetch the directory")
        client = cls(account, key, net, directory)
        if account.pk and account.ari_offered is not client.has_ari:
            account.ari_offered = client.has_ari
            AcmeAccount.objects.filter(pk=account.pk).update(ari_offered=client.has_ari)
        return client

    @classmethod
    def reuse(cls, account: AcmeAccount) -> AcmeClient:
        """This thread's client for ``account``, made by ``connect`` the first time and again when the account's
        CA, key or trust changed or the directory is older than DIRECTORY_REFRESH_SECONDS. Call ``forget`` after
        an error, so the next order starts from a fresh connection and directory."""
        kept: dict[int, tuple[str, float, AcmeClient]] = _kept.__dict__.setdefault("clients", {})
        fingerprint = _account_fingerprint(account)
        entry = kept.get(account.pk)
        if entry is not None and entry[0] == fingerprint and time.monotonic() - entry[1] < DIRECTORY_REFRESH_SECONDS:
            client = entry[2]
            client.account = account
            return client
        client = cls.connect(account)
        kept[account.pk] = (fingerprint, time.monotonic(), client)
        return client

    @classmethod
    def forget(cls, account: AcmeAccount) -> None:
        """Drop this thread's kept client for ``account`` (its connection is closed)."""
        kept: dict[int, tuple[str, float, AcmeClient]] = _kept.__dict__.setdefault("clients", {})
        entry = kept.pop(account.pk, None)
        if entry is not None:
            entry[2].net.session.close()

    # ---- plumbing -------------------------------------------------------------------------------------
    def _call(self, fn: Any, *args: Any, what: str, **kwargs: Any) -> Any:
        return _call(self.net, fn, *args, what=what, **kwargs)

    def _post_as_get(self, url: str, what: str) -> requests.Response:
        return self._call(self.client._post_as_get, url, what=what)

    # ---- directory metadata ---------------------------------------------------------------------------
    @property
    def profiles(self) -> dict[str, str]:
        meta = getattr(self.directory, "meta", None)
        return dict(getattr(meta, "profiles", None) or {})

    @property
    def has_ari(self) -> bool:
        try:
            return bool(self.directory["renewalInfo"])
        except KeyError:
            return False

    # ---- account --------------------------------------------------------------------------------------
    def ensure_registered(self) -> str:
        """Register the account once (row-locked so parallel orders do not race), return its URL."""
        if self.account.account_url:
            return self.account.account_url
        with transaction.atomic():
            account = AcmeAccount.objects.select_for_update().get(pk=self.account.pk)
            if not account.account_url:
                account.account_url = self._register(account)
                account.terms_agreed = True
                account.save(update_fields=["account_url", "terms_agreed", "updated_at"])
        self.account.account_url = account.account_url
        self.net.account = messages.RegistrationResource(body=messages.Registration(), uri=account.account_url)
        return account.account_url

    def _register(self, account: AcmeAccount) -> str:
        fields: dict[str, Any] = {"terms_of_service_agreed": True}
        email = account.contact_email or settings.ACME_CONTACT_EMAIL
        if email:
            fields["email"] = email
        if account.eab_kid:
            if not account.eab_hmac_key:
                raise AcmeError("EAB key id set without an EAB HMAC key", error_type=LocalError.EAB, permanent=True)
            fields["external_account_binding"] = messages.ExternalAccountBinding.from_data(
                account_public_key=self.key.public_key(), kid=account.eab_kid,
                hmac_key=account.eab_hmac_key, directory=self.directory)
        elif self.client.external_account_required():
            raise AcmeError("this CA requires External Account Binding: set the account's EAB key id and HMAC key",
                            error_type=LocalError.EAB, permanent=True)
        registration = messages.NewRegistration.from_data(**fields)
        try:
            regr = self._call(self.client.new_account, registration, what="register the account")
        except errors.ConflictError as exc:  # key already registered: the Location is the account URL
            return str(exc.location)
        return str(regr.uri)

    # ---- orders ---------------------------------------------------------------------------------------
    def new_order(self, domains: list[str], profile: str = "", replaces: str = "") -> OrderState:
        """Create an order. A ``replaces`` refused by the CA raises ``ReplacesRejected``."""
        if profile and self.profiles and profile not in self.profiles:  # checked before anything reaches the CA
            raise AcmeError(f"profile {profile!r} is not offered by {self.account.directory_url} "
                            f"(offered: {', '.join(sorted(self.profiles))})", error_type=LocalError.PROFILE,
                            permanent=True)
        self.ensure_registered()
        body = NewOrderWithExtras(
            identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=d) for d in domains],
            profile=profile if (profile and self.profiles) else None,
            replaces=replaces if (replaces and self.has_ari) else None,
        )
        try:
            response = self._call(self.client._post, self.directory["newOrder"], body, what="create the order")
        except AcmeError as exc:
            if body.replaces and exc.error_type.startswith("urn:ietf:params:acme:error:") and (
                "replaces" in str(exc).lower() or exc.error_type.endswith(":conflict")
                or exc.error_type.endswith(":alreadyReplaced")
            ):
                raise ReplacesRejected(str(exc), exc.error_type, exc.retry_after) from exc
            raise
        return self._order_state(response.headers.get("Location", ""), response.json())

    def get_order(self, order_url: str) -> OrderState:
        response = self._post_as_get(order_url, "fetch the order")
        return self._order_state(order_url, response.json(), response)

    def _order_state(self, url: str, jobj: dict[str, Any], response: requests.Response | None = None
                     ) -> OrderState:
        order = messages.Order.from_json(jobj)
        err = order.error
        expires = order.expires
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
        return OrderState(
            url=url, status=str(order.status.name if order.status else ""),
            authorizations=list(order.authorizations or []), finalize_url=order.finalize or "",
            certificate_url=order.certificate, error=str(err.detail or err.description or err.typ) if err else "",
            error_type=str(err.typ or "") if err else "", expires=expires,
            retry_hint=_retry_after(response) if response is not None else None,
        )

    def pending_challenges(self, order: OrderState, challenge_type: str) -> list[Challenge]:
        """The challenges of ``challenge_type`` still to answer (valid authorizations are skipped)."""
        out: list[Challenge] = []
        for url in order.authorizations:
            authz = messages.Authorization.from_json(self._post_as_get(url, "fetch an authorization").json())
            domain = authz.identifier.value
            if authz.status == messages.STATUS_VALID:
                continue
            if authz.status != messages.STATUS_PENDING:
                detail = "; ".join(str(c.error) for c in authz.challenges if c.error is not None)
                raise AcmeError(f"authorization for {domain} is {authz.status.name}: {detail}".rstrip(": "),
                                error_type="urn:ietf:params:acme:error:unauthorized")
            chosen = next((c for c in authz.challenges if c.chall.typ == challenge_type), None)
            if chosen is None:
                offered = ", ".join(sorted(c.chall.typ for c in authz.challenges))
                raise AcmeError(f"{domain}: the CA offers no {challenge_type} challenge (offered: {offered})",
                                error_type=LocalError.CHALLENGE_TYPE, permanent=True)
            key_authorization = chosen.chall.key_authorization(self.key)
            txt, record = "", ""
            if isinstance(chosen.chall, challenges.DNS01):
                txt = chosen.chall.validation(self.key)
                record = chosen.chall.validation_domain_name(domain)
            out.append(Challenge(domain=domain, wildcard=bool(authz.wildcard), type=challenge_type,
                                 token=chosen.chall.encode("token"), key_authorization=key_authorization,
                                 dns_txt_value=txt, dns_record_name=record, body=chosen))
        return out

    def answer(self, challenge: Challenge) -> None:
        response = challenge.body.chall.response(self.key)
        self._call(self.client.answer_challenge, challenge.body, response, what=f"answer {challenge.domain}")

    def wait_order(self, order_url: str, want: set[str], deadline: float) -> OrderState:
        """Poll until the order's status is in ``want`` or ``invalid``; short growing intervals, capped by
        ``Retry-After`` and the deadline (``time.monotonic()``)."""
        delay = 0.05
        while True:
            state = self.get_order(order_url)
            if state.status in want or state.status == "invalid":
                return state
            if time.monotonic() >= deadline:
                raise AcmeError(f"order stuck in {state.status!r} past its deadline", error_type=LocalError.TIMEOUT)
            wait = delay
            if state.retry_hint is not None:
                wait = max(delay, min(5.0, (state.retry_hint - dt.datetime.now(dt.UTC)).total_seconds()))
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            delay = min(delay * 1.6, 1.0)

    def finalize(self, order: OrderState, csr_pem: str) -> OrderState:
        csr = cx509.load_pem_x509_csr(csr_pem.encode())
        try:
            response = self._call(self.client._post, order.finalize_url, messages.CertificateRequest(csr=csr),
                                  what="finalize the order")
        except AcmeError as exc:
            if exc.error_type.endswith(":orderNotReady"):  # finalized already (a resumed order): poll on
                return self.get_order(order.url)
            raise
        return self._order_state(order.url, response.json(), response)

    def download(self, certificate_url: str) -> str:
        return self._post_as_get(certificate_url, "download the certificate").text

    # ---- ARI and revocation ---------------------------------------------------------------------------
    def renewal_window(self, ari_id: str) -> tuple[dt.datetime, dt.datetime] | None:
        """RFC 9773 suggested window for the certificate with ARI id ``ari_id``, or None if not offered."""
        info = self.renewal_info(ari_id)
        return info.window if info else None

    def renewal_info(self, ari_id: str) -> RenewalInfo | None:
        """The window and the CA's ``Retry-After`` for ``ari_id``, or None if the CA offers no ARI."""
        if not self.has_ari or not ari_id:
            return None
        url = self.directory["renewalInfo"].rstrip("/") + "/" + ari_id
        response = self._call(self.net.get, url, what="fetch renewal information")
        try:
            info = messages.RenewalInfo.from_json(response.json())
        except (ValueError, jose.DeserializationError) as exc:
            raise AcmeError(f"fetch renewal information: bad answer: {exc}", error_type=LocalError.CLIENT) from exc
        start, end = info.suggested_window.start, info.suggested_window.end
        window = (start if start.tzinfo else start.replace(tzinfo=dt.UTC),
                  end if end.tzinfo else end.replace(tzinfo=dt.UTC))
        return RenewalInfo(window=window, retry_after=_retry_after(response))

    def revoke(self, cert_pem: str, reason: int = 0) -> None:
        self.ensure_registered()
        cert = cx509.load_pem_x509_certificate(cert_pem.encode())
        self._call(self.client.revoke, cert, reason, what="revoke the certificate")
