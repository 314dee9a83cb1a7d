"""Execution list filters; every filter has a matching index (see `Execution.Meta.indexes`)."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q

from executions.models import Execution, ExecutionStatus


def split_csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def validate_statuses(value: str) -> None:
    unknown = [s for s in split_csv(value) if s not in ExecutionStatus.values]
    if unknown:
        # user input goes in params: django-filter %-formats the message
        raise ValidationError(
            "unknown status %(unknown)s (known: %(known)s)",
            params={"unknown": ", ".join(unknown), "known": ", ".join(ExecutionStatus.values)},
        )


class UtcIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 date-time normalised to UTC: PostgreSQL refuses offsets beyond ±15:59, which
    ISO 8601 (and Python) allow, so passing the offset through would be a 500."""

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError as error:
            raise ValidationError("date-time out of range") from error


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class ExecutionFilter(django_filters.FilterSet):
    workflow = django_filters.CharFilter(method="filter_workflow")
    status = django_filters.CharFilter(method="filter_status", validators=[validate_statuses])
    trigger = django_filters.CharFilter(method="filter_trigger")
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    label = django_filters.CharFilter(method="filter_label")
    q = django_filters.CharFilter(method="filter_text")

    class Meta:
        model = Execution
        fields: list[str] = []

    def filter_workflow(self, queryset, name, value):
        return queryset.filter(workflow__slug__in=split_csv(value))

    def filter_status(self, queryset, name, value):
        return queryset.filter(status__in=split_csv(value))

    def filter_trigger(self, queryset, name, value):
        return queryset.filter(trigger_kind__in=split_csv(value))

    def filter_label(self, queryset, name, value):
        for item in split_csv(value):
            key, sep, label_value = item.partition("=")
            queryset = queryset.filter(
                **({f"labels__{key}": label_value} if sep else {"labels__has_key": key})
            )
        return queryset

    def filter_text(self, queryset, name, value):
        return queryset.filter(
            Q(workflow__slug__icontains=value)
            | Q(error__icontains=value)
            | Q(inputs__icontains=value)
            | Q(trigger__icontains=value)
        )
