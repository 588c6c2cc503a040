from django.apps import AppConfig


class CertificatesConfig(AppConfig):
    name = "certificates"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # the push plane builds the "certificates" and "acme_challenges" resources with these
        from certificates.services.distribution import register_resources

        register_resources()
        from certificates.metrics import register_reader

        register_reader()
        from certificates.services import changes, requests, seams

        requests.register()
        changes.register()
        seams.register_certificate_requester(requests.request_from_gateway)
