from django.contrib import admin

from executions.models import Execution, ExecutionEvent, Job


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["id", "workflow", "status", "trigger_kind", "created_at", "finished_at"]
    list_filter = ["status", "trigger_kind"]
    raw_id_fields = ["workflow", "version", "rerun_of", "parent"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "execution", "node_id", "attempt", "status", "agent", "queued_at"]
    list_filter = ["status"]
    raw_id_fields = ["execution", "agent"]


@admin.register(ExecutionEvent)
class ExecutionEventAdmin(admin.ModelAdmin):
    list_display = ["id", "execution", "level", "kind", "message", "timestamp"]
    list_filter = ["level"]
    raw_id_fields = ["execution", "job"]
