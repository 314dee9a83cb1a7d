"""Inserting many rows at once through PostgreSQL's COPY.

A fan-out step creates a job per branch and four log events per job in one transaction: a
100-wide fan-out inserts 100 jobs and 400 events while the report that started it waits. For
such batches Django's `bulk_create` spends most of its time compiling the statement and quoting
every value into it (about 12 ms for 400 events, against 4 ms through COPY). COPY costs two
more round trips than one INSERT, so small batches (every other report) keep `bulk_create`, and
so does any other database (the SQLite quick start).

Rows are written with each field's own `pre_save` and `get_db_prep_save`, as `bulk_create`
would (skipped where they would return the value unchanged); an auto-increment primary key is
drawn from its sequence first, so the instances come back with their ids, as they do from
`bulk_create` on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateField, Field, Model
from django.db.models.fields import NOT_PROVIDED, AutoFieldMixin

COPY_FROM_ROWS = 32

M = TypeVar("M", bound=Model)


def insert_rows(model: type[M], objs: Sequence[M], *, copy_from: int = COPY_FROM_ROWS) -> list[M]:
    """Insert `objs` (new instances of `model`) and return them with their primary keys: through
    COPY on PostgreSQL when there are at least `copy_from` of them, else with `bulk_create`
    (always for a model with database defaults, which COPY cannot leave to the database)."""
    objs = list(objs)
    alias = router.db_for_write(model)
    if (
        len(objs) < copy_from
        or connections[alias].vendor != "postgresql"
        or any(field.db_default is not NOT_PROVIDED for field in model._meta.concrete_fields)
    ):
        return model.objects.using(alias).bulk_create(objs)
    return copy_rows(model, objs, alias)


def copy_rows(model: type[M], objs: list[M], alias: str) -> list[M]:
    """`objs` written with one COPY on the PostgreSQL connection `alias` (see the module)."""
    connection = connections[alias]
    opts = model._meta
    quote = connection.ops.quote_name
    fields = [field for field in opts.concrete_fields if not field.generated]
    with connection.cursor() as cursor:
        unnumbered = [obj for obj in objs if obj.pk is None]
        if unnumbered:
            if not isinstance(opts.pk, AutoFieldMixin):
                raise ValueError(f"{opts.label} rows need their primary key set")
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [quote(opts.db_table), opts.pk.column, len(unnumbered)],
            )
            for obj, (pk,) in zip(unnumbered, cursor.fetchall(), strict=True):
                obj.pk = pk
        columns = ", ".join(quote(field.column) for field in fields)
        statement = f"COPY {quote(opts.db_table)} ({columns}) FROM STDIN"
        preparers = [value_preparer(field, connection) for field in fields]
        with connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
            for obj in objs:
                copy.write_row([prepare(obj) for prepare in preparers])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = alias
    return objs


# Column types whose database value, for a Python value of exactly this type, is the value
# itself (`get_db_prep_save` returns it unchanged on PostgreSQL). Writing a wide fan-out spent
# most of its time asking each field for that, once per value.
PASSED_THROUGH: dict[str, type] = {
    "AutoField": int,
    "BigAutoField": int,
    "BigIntegerField": int,
    "BooleanField": bool,
    "CharField": str,
    "FloatField": float,
    "IntegerField": int,
    "PositiveBigIntegerField": int,
    "PositiveIntegerField": int,
    "PositiveSmallIntegerField": int,
    "SlugField": str,
    "SmallIntegerField": int,
    "TextField": str,
    "UUIDField": uuid.UUID,
}


def value_preparer(field: Field, connection: BaseDatabaseWrapper) -> Callable[[Model], Any]:
    """The function giving `field`'s database value of an instance, as `bulk_create` writes it:
    `pre_save` where it can change the value (time stamps set on save), then
    `get_db_prep_save`, skipped for values that it would return unchanged."""
    attname = field.attname
    target = field.target_field if field.is_relation else field
    passed = PASSED_THROUGH.get(target.get_internal_type())
    sets_value = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    plain_pre_save = type(field).pre_save is Field.pre_save or (
        isinstance(field, DateField) and not sets_value
    )

    def prepare(obj: Model) -> Any:
        value = getattr(obj, attname) if plain_pre_save else field.pre_save(obj, True)
        if value is None or type(value) is passed:
            return value
        return field.get_db_prep_save(value, connection)

    return prepare
