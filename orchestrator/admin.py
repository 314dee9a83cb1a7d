from django import forms
from django.contrib import admin

from orchestrator.models import ApiToken, Secret, SecretUsage, Workflow, WorkflowVersion
from orchestrator.secret_box import encrypt


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_active", "published_version", "latest_version_number"]
    search_fields = ["slug", "name"]


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["workflow", "number", "created_by", "created_at"]
    readonly_fields = ["workflow", "number", "definition", "source", "created_by", "created_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]


class SecretForm(forms.ModelForm):
    """The value is write-only: the field starts empty and a blank one keeps the stored value."""

    value = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False)

    class Meta:
        model = Secret
        fields = ["name", "workflow", "description"]

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("value"):
            self.add_error("value", "required for a new secret")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("value"):
            self.instance.ciphertext = encrypt(self.cleaned_data["value"])
        return super().save(commit)


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ["name", "workflow", "description", "updated_at"]
    search_fields = ["name"]


@admin.register(SecretUsage)
class SecretUsageAdmin(admin.ModelAdmin):
    list_display = ["name", "execution", "job", "used_at"]
    raw_id_fields = ["secret", "execution", "job"]
