"""A credential names the group it was issued for; the default group exists from the start."""

import django.db.models.deletion
from django.db import migrations, models


def default_group(apps, schema_editor):
    GatewayGroup = apps.get_model("gateways", "GatewayGroup")
    GatewayCredential = apps.get_model("gateways", "GatewayCredential")
    GatewayInstance = apps.get_model("gateways", "GatewayInstance")
    group, _ = GatewayGroup.objects.get_or_create(name="default", defaults={"description": "created by migration"})
    # Existing credentials keep the group their Gateway last registered in (else default).
    for cred in GatewayCredential.objects.all():
        inst = GatewayInstance.objects.filter(instance_id=cred.name).first()
        cred.group_id = inst.group_id if inst else group.pk
        cred.save(update_fields=["group"])


class Migration(migrations.Migration):
    dependencies = [("gateways", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="gatewaycredential",
            name="group",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="credentials", to="gateways.gatewaygroup"),
        ),
        migrations.AddField(
            model_name="gatewaycredential",
            name="revoked_reason",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AlterField(
            model_name="gatewaycredential",
            name="name",
            field=models.CharField(help_text="the Gateway's instance id", max_length=128),
        ),
        migrations.RunPython(default_group, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="gatewaycredential",
            name="group",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="credentials",
                                    to="gateways.gatewaygroup"),
        ),
        migrations.AddIndex(
            model_name="gatewaycredential",
            index=models.Index(fields=["revoked_at"], name="gwcred_revoked_idx"),
        ),
    ]
