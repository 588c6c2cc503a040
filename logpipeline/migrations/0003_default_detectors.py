"""Install the default detectors (in simulation: they record what they would do until an operator switches them)."""

from django.db import migrations


def seed(apps, schema_editor):
    from logpipeline.detectors import seed_default_detectors

    seed_default_detectors(apps.get_model("logpipeline", "Detector"))


class Migration(migrations.Migration):

    dependencies = [("logpipeline", "0002_log_pipeline")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
