from django.apps import AppConfig


class WafConfigConfig(AppConfig):
    name = "waf_config"
    default_auto_field = "django.db.models.BigAutoField"
