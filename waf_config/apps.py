from django.apps import AppConfig


class WafConfigConfig(AppConfig):
    name = "waf_config"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # the push plane builds "waf_rules", "config" and "emergency_rules" with these; approvals of versions are
        # decided through audit.approvals, which calls back here
        from waf_config.services import deployment, emergency, threat_lists, versions

        deployment.register_resources()
        emergency.register_resources()
        versions.register()
        threat_lists.register()  # threat-feed block lists from integrations become gateway.yaml versions
        # the log pipeline's detections become emergency rules through its responder seam
        from waf_config import responder

        responder.register()
