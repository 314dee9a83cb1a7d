"""The four roles as Django groups (see orchestrator.roles); approvers and admins also get the
`approvals.respond` permission so Django-permission-based tools agree with the role model."""

from django.db import migrations

ROLES = ("viewer", "operator", "approver", "admin")
RESPONDERS = ("approver", "admin")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    content_type, _ = ContentType.objects.get_or_create(
        app_label="approvals", model="approvalrequest"
    )
    respond, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="respond",
        defaults={"name": "Can approve or reject approval requests"},
    )
    for name in RESPONDERS:
        groups[name].permissions.add(respond)


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orchestrator", "0002_triggers"),
        ("approvals", "0003_links_audit_escalation"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
