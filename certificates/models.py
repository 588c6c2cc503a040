"""ACME accounts, certificates, their immutable versions, and the orders that produce them."""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import Q
from django.utils import timezone

from worker_project.encryption import EncryptedTextField


class KeyType(models.TextChoices):
    EC256 = "ec256", "ECDSA P-256"
    EC384 = "ec384", "ECDSA P-384"
    RSA2048 = "rsa2048", "RSA 2048"
    RSA3072 = "rsa3072", "RSA 3072"
    RSA4096 = "rsa4096", "RSA 4096"


class ChallengeType(models.TextChoices):
    HTTP_01 = "http-01", "HTTP-01 (through the Gateways)"
    DNS_01 = "dns-01", "DNS-01 (RFC 2136)"


class AcmeAccount(models.Model):
    """An account at one ACME directory (an issuer). The account key never leaves the database unencrypted."""

    name = models.SlugField(max_length=64, unique=True)
    directory_url = models.URLField(max_length=500)
    contact_email = models.EmailField(blank=True)
    key_pem = EncryptedTextField()
    account_url = models.URLField(max_length=500, blank=True, help_text="the account's kid, once registered")
    eab_kid = models.CharField("EAB key id", max_length=200, blank=True)
    eab_hmac_key = EncryptedTextField("EAB HMAC key", null=True, blank=True)
    tls_ca_bundle = models.CharField(
        max_length=500, blank=True, help_text="PEM file to trust for the directory's HTTPS (e.g. Pebble's)"
    )
    profile = models.CharField(max_length=64, blank=True, help_text="default certificate profile, if offered")
    trust_roots_pem = models.TextField(
        blank=True, help_text="PEM roots this CA's chains must build to (else settings.CERT_TRUST_STORE)"
    )
    terms_agreed = models.BooleanField(default=False)
    ari_offered = models.BooleanField(
        "offers ARI", null=True, blank=True, editable=False,
        help_text="whether the directory offered renewalInfo (RFC 9773) when last fetched; empty: not yet seen",
    )
    caa_identifier = models.CharField(
        "CAA identifier", max_length=253, blank=True,
        help_text="the issuer domain this CA recognizes in CAA records (RFC 8659), e.g. letsencrypt.org; "
                  "empty: any CAA issue record forbids it")
    preflight_resolver = models.CharField(
        max_length=255, blank=True,
        help_text="host:port of the DNS resolver pre-flight asks (the one the CA resolves with); empty: system")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.directory_url})"


class DnsUpdateServer(models.Model):
    """An authoritative server that takes RFC 2136 dynamic updates signed with TSIG, for DNS-01."""

    name = models.SlugField(max_length=64, unique=True)
    server = models.CharField(max_length=255, help_text="address of the primary that accepts updates")
    port = models.PositiveIntegerField(default=53)
    zone = models.CharField(max_length=255)
    tsig_key_name = models.CharField(max_length=255)
    tsig_algorithm = models.CharField(max_length=64, default="hmac-sha256")
    tsig_secret = EncryptedTextField()
    propagation_timeout_seconds = models.PositiveIntegerField(default=120)

    def __str__(self) -> str:
        return f"{self.name} ({self.zone} @ {self.server}:{self.port})"


class CertificateState(models.TextChoices):
    PENDING = "pending", "Pending (no certificate yet)"
    VALID = "valid", "Valid"
    RENEWING = "renewing", "Renewing"
    TEMPORARY = "temporary", "Temporary (self-signed failover)"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


class Certificate(models.Model):
    """A named certificate for a set of domains, kept renewed; what the Gateways serve is ``current_version``."""

    name = models.SlugField(max_length=128, unique=True)
    common_name = models.CharField(max_length=253)
    domains = models.JSONField(help_text="all SANs, the common name first")
    key_type = models.CharField(max_length=16, choices=KeyType.choices, default=KeyType.EC256)
    challenge_type = models.CharField(max_length=16, choices=ChallengeType.choices, default=ChallengeType.HTTP_01)
    dns_server = models.ForeignKey(DnsUpdateServer, null=True, blank=True, on_delete=models.PROTECT)
    issuers = models.ManyToManyField(AcmeAccount, through="CertificateIssuer", related_name="certificates")
    gateway_group = models.ForeignKey(
        "gateways.GatewayGroup", null=True, blank=True, on_delete=models.PROTECT,
        help_text="served by this group only; empty means every group",
    )
    profile = models.CharField(max_length=64, blank=True)
    auto_renew = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=CertificateState.choices, default=CertificateState.PENDING)
    current_version = models.ForeignKey(
        "CertificateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="the version the Gateways are told to serve",
    )
    not_after = models.DateTimeField(null=True, blank=True, help_text="expiry of the current version")
    renew_after = models.DateTimeField(null=True, blank=True, help_text="renewal is due from this moment")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="backoff: no attempt before this")
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    ari_next_check_at = models.DateTimeField(
        null=True, blank=True, help_text="poll the CA's renewal window (RFC 9773) again from this moment; "
                                         "empty: nothing to poll (no ARI, temporary or no certificate)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            # scan_expiring_certificates: auto_renew AND renew_after <= now — a range scan over due rows only
            models.Index(fields=["renew_after"], condition=Q(auto_renew=True), name="cert_due_idx"),
            # failover check: "expires within N days"
            models.Index(fields=["not_after"], name="cert_not_after_idx"),
            # retry_failed_renewals: failing certificates whose backoff (next_attempt_at) has passed
            models.Index(fields=["next_attempt_at"], condition=Q(auto_renew=True, consecutive_failures__gt=0),
                         name="cert_retry_idx"),
            # refresh_renewal_info (policy.ari_check_due): auto_renew AND ari_next_check_at <= now — a range scan
            # over due polls only; rows with nothing to poll (NULL) are not even in the index
            models.Index(fields=["ari_next_check_at"], condition=Q(auto_renew=True, ari_next_check_at__isnull=False),
                         name="cert_ari_check_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def days_left(self, now: dt.datetime | None = None) -> int | None:
        """Whole days until the served version expires, rounded down (negative once expired); None when nothing
        is served. The one number admin and ``list_certificates`` show."""
        if self.not_after is None:
            return None
        return (self.not_after - (now or timezone.now())).days


class CertificateIssuer(models.Model):
    """Issuer fallback: the ACME accounts a certificate may be issued by, tried in ``priority`` order."""

    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE)
    account = models.ForeignKey(AcmeAccount, on_delete=models.PROTECT)
    priority = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["priority"]
        constraints = [
            models.UniqueConstraint(fields=["certificate", "account"], name="uniq_cert_issuer"),
        ]

    def __str__(self) -> str:
        return f"{self.certificate_id} -> {self.account_id} (#{self.priority})"


class VersionSource(models.TextChoices):
    ACME = "acme", "ACME"
    TEMPORARY = "temporary", "Temporary self-signed"
    IMPORTED = "imported", "Imported from a Gateway"
    RESTORED = "restored", "Restored from backup"


class CertificateVersion(models.Model):
    """One issued (or temporary, imported, restored) certificate. Content never changes; only the lifecycle
    markers ``retired_at`` and ``revoked_at`` are set later. Rollback points ``current_version`` back here."""

    certificate = models.ForeignKey(Certificate, on_delete=models.PROTECT, related_name="versions")
    source = models.CharField(max_length=16, choices=VersionSource.choices)
    serial_hex = models.CharField(max_length=64, help_text="lowercase hex without leading zeros, as the Gateway")
    fingerprint_sha256 = models.CharField(max_length=64)
    subject = models.CharField(max_length=500)
    issuer_dn = models.CharField(max_length=500)
    domains = models.JSONField()
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    cert_pem = models.TextField(help_text="the leaf")
    chain_pem = models.TextField(blank=True, help_text="intermediates, leaf excluded")
    key_pem = EncryptedTextField()
    key_type = models.CharField(max_length=16, choices=KeyType.choices)
    account = models.ForeignKey(AcmeAccount, null=True, blank=True, on_delete=models.PROTECT)
    order = models.ForeignKey("AcmeOrder", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ari_cert_id = models.CharField("ARI certificate id", max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # a redelivered task that downloads the same certificate again finds it here instead of adding it
            models.UniqueConstraint(fields=["certificate", "fingerprint_sha256"], name="uniq_cert_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"{self.certificate.name} #{self.serial_hex[:16]} ({self.source})"

    @property
    def is_temporary(self) -> bool:
        return self.source == VersionSource.TEMPORARY


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    AUTHORIZING = "authorizing", "Answering challenges"
    FINALIZING = "finalizing", "Finalizing"
    VALID = "valid", "Issued"
    FAILED = "failed", "Failed"
    ABANDONED = "abandoned", "Abandoned (deadline passed)"


class AcmeOrder(models.Model):
    """One renewal attempt: an ACME order and everything needed to resume it after a crash."""

    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="orders")
    account = models.ForeignKey(AcmeAccount, null=True, blank=True, on_delete=models.PROTECT)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    order_url = models.URLField(max_length=500, blank=True)
    domains = models.JSONField(default=list)
    challenge_type = models.CharField(max_length=16, choices=ChallengeType.choices)
    key_pem = EncryptedTextField(null=True, blank=True, help_text="the new key, kept so a resumed order reuses it")
    csr_pem = models.TextField(blank=True)
    replaces = models.CharField(max_length=300, blank=True, help_text="ARI id of the certificate replaced")
    dns_records = models.JSONField(
        default=list, blank=True,
        help_text="DNS-01 TXT records added for this order, [name, value] pairs, removed when the attempt ends "
                  "(stored before they are added, so an attempt after a crash removes them too)")
    error = models.TextField(blank=True)
    error_type = models.CharField(max_length=200, blank=True, help_text="ACME problem type, if the CA sent one")
    retry_after = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deadline = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # at most one live order per certificate (the Redis lock's backstop in the database)
            models.UniqueConstraint(
                fields=["certificate"],
                condition=Q(status__in=["pending", "authorizing", "finalizing"]),
                name="uniq_live_order_per_cert",
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} for {self.certificate.name}: {self.status}"


class AcmeChallenge(models.Model):
    """A live HTTP-01 token. The set of live rows is the ``acme_challenges`` resource pushed to Gateways."""

    order = models.ForeignKey(AcmeOrder, on_delete=models.CASCADE, related_name="challenges")
    domain = models.CharField(max_length=253)
    token = models.CharField(max_length=200, unique=True)
    key_authorization = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.domain} {self.token}"


class CertificatePolicy(models.Model):
    """What a Gateway group may hold and who must agree: checked by ``services.requests`` for every request,
    whoever files it (admin, command, API, a Gateway)."""

    group = models.OneToOneField("gateways.GatewayGroup", on_delete=models.CASCADE,
                                 related_name="certificate_policy")
    allowed_suffixes = models.JSONField(
        default=list, blank=True,
        help_text="domain suffixes the group may hold (a name equal to or under one of them), e.g. shop.example.test")
    allow_wildcards = models.BooleanField(default=False)
    max_names = models.PositiveSmallIntegerField(default=10)
    issuers = models.ManyToManyField(AcmeAccount, blank=True, related_name="+",
                                     help_text="ACME accounts requests for this group may use")
    auto_approve_suffixes = models.JSONField(
        default=list, blank=True,
        help_text="names all under these suffixes are approved without a second person when the requester is "
                  "in the trusted role (never for Gateway requests)")
    trusted_role = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", help_text="the role auto-approval trusts")
    gateway_requests_per_hour = models.PositiveIntegerField(
        default=20, help_text="new on-demand requests a Gateway group may file per hour; 0 refuses them all")
    gateway_issuer = models.ForeignKey(AcmeAccount, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+", help_text="issuer of on-demand requests from Gateways")

    class Meta:
        verbose_name_plural = "certificate policies"

    def __str__(self) -> str:
        return f"policy of {self.group}"


class RequestState(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved (issuing)"
    REJECTED = "rejected", "Rejected"
    REFUSED = "refused", "Refused by pre-flight"
    ISSUED = "issued", "Issued"
    FAILED = "failed", "Failed"


class RequestSource(models.TextChoices):
    PERSON = "person", "A person"
    GATEWAY = "gateway", "A Gateway (on demand)"


class CertificateRequest(models.Model):
    """Someone asks for a new certificate; a second person (or the group's auto-approval rule) agrees; then it is
    issued through the normal renewal service. Renewals of the issued certificate need no new request."""

    domains = models.JSONField(help_text="the names, normalized, the first one the common name")
    dedupe_key = models.CharField(max_length=2000, editable=False, help_text="sorted names, for deduplication")
    group = models.ForeignKey("gateways.GatewayGroup", on_delete=models.PROTECT, related_name="+")
    issuer = models.ForeignKey(AcmeAccount, on_delete=models.PROTECT, related_name="+")
    key_type = models.CharField(max_length=16, choices=KeyType.choices, default=KeyType.EC256)
    challenge_type = models.CharField(max_length=16, choices=ChallengeType.choices, default=ChallengeType.HTTP_01)
    dns_server = models.ForeignKey(DnsUpdateServer, null=True, blank=True, on_delete=models.PROTECT)
    justification = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=RequestSource.choices, default=RequestSource.PERSON)
    requested_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    requested_by_name = models.CharField(max_length=150)
    state = models.CharField(max_length=16, choices=RequestState.choices, default=RequestState.PENDING)
    auto_approved = models.BooleanField(default=False)
    policy_notes = models.JSONField(default=list, blank=True, help_text="the policy rules checked, and how")
    preflight = models.JSONField(default=list, blank=True,
                                 help_text="pre-flight checks: [{check, name, ok, detail}] of the last run")
    preflight_at = models.DateTimeField(null=True, blank=True)
    certificate = models.ForeignKey(Certificate, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="requests")
    error = models.TextField(blank=True, help_text="why it failed or was refused")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("approve_certificaterequest", "Can approve certificate requests")]
        constraints = [
            # request_from_gateway: one open request per (group, names) however often a Gateway asks
            models.UniqueConstraint(fields=["group", "dedupe_key"], condition=Q(state="pending"),
                                    name="uniq_pending_cert_request"),
        ]
        indexes = [
            # admin queue: pending first, newest first
            models.Index(fields=["state", "-created_at"], name="cert_request_state_idx"),
        ]

    def __str__(self) -> str:
        return f"request {self.pk}: {', '.join(self.domains or [])}"


class CertificateChangeKind(models.TextChoices):
    REVOKE = "revoke", "Revoke a version"
    EXPORT_KEYS = "export_keys", "Export private keys (backup with keys)"
    MOVE = "move", "Move to another Gateway group"


class CertificateChange(models.Model):
    """A risky change waiting for a second person (the subject of its ``audit.ApprovalRequest``); carried out by
    the approval, or, for an export, once by the requester after it."""

    kind = models.CharField(max_length=16, choices=CertificateChangeKind.choices)
    certificate = models.ForeignKey(Certificate, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="changes")
    version = models.ForeignKey(CertificateVersion, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    target_group = models.ForeignKey("gateways.GatewayGroup", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    reason = models.CharField(max_length=64, blank=True, help_text="revocation reason code")
    requested_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=RequestState.choices, default=RequestState.PENDING)
    used_at = models.DateTimeField(null=True, blank=True, help_text="an approved export, when it was made")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        what = self.certificate.name if self.certificate is not None else "all certificates"
        return f"{self.get_kind_display()}: {what}"
