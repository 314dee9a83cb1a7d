"""Inserting many rows at once through PostgreSQL's COPY.

A fan-out step creates a job per branch and four log events per job in one transaction: a
100-wide fan-out inserts 100 jobs and 400 events while the report that started it waits. For
such batches Django's `bulk_create` spends most of its time compiling the statement and quoting
every value into it (about 12 ms for 400 events, against 4 ms through COPY). COPY costs two
more round trips than one INSERT, so small batches (every report, every start) are one
`INSERT … VALUES` whose text is built once per model and row count: compiling it was about
half of what `bulk_create` spent on a report's few rows. Any other database (the SQLite quick
start) keeps `bulk_create`.

Rows are written with each field's own `pre_save` and `get_db_prep_save`, as `bulk_create`
would (skipped where they would return the value unchanged); an auto-increment primary key is
drawn from its sequence first, so the instances come back with their ids, as they do from
`bulk_create` on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateField, Field, Model
from django.db.models.fields import NOT_PROVIDED, AutoFieldMixin

COPY_FROM_ROWS = 32

M = TypeVar("M", bound=Model)


def insert_rows(model: type[M], objs: Sequence[M], *, copy_from: int = COPY_FROM_ROWS) -> list[M]:
    """Insert `objs` (new instances of `model`) and return them with their primary keys. On
    PostgreSQL: through COPY when there are at least `copy_from` of them, else with one
    `INSERT … VALUES`. Elsewhere, and always for a model with database defaults (which neither
    can leave to the database), with `bulk_create`."""
    objs = list(objs)
    if not objs:
        return objs
    alias = router.db_for_write(model)
    if connections[alias].vendor != "postgresql" or any(
        field.db_default is not NOT_PROVIDED for field in model._meta.concrete_fields
    ):
        return model.objects.using(alias).bulk_create(objs)
    if len(objs) < copy_from:
        return insert_values(model, objs, alias)
    return copy_rows(model, objs, alias)


def insert_values(model: type[M], objs: list[M], alias: str) -> list[M]:
    """`objs` written with one `INSERT … VALUES` on the PostgreSQL connection `alias`; an
    auto-increment key comes back through RETURNING, in the rows' order as `bulk_create`
    relies on too."""
    connection = connections[alias]
    numbered = isinstance(model._meta.pk, AutoFieldMixin) and objs[0].pk is None
    if numbered and any(obj.pk is not None for obj in objs):
        return model.objects.using(alias).bulk_create(objs)
    fields = inserted_fields(model, numbered)
    preparers = [value_preparer(field, connection) for field in fields]
    params = [prepare(obj) for obj in objs for prepare in preparers]
    with connection.cursor() as cursor:
        cursor.execute(insert_values_sql(model, numbered, len(objs), alias), params)
        if numbered:
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
    for obj in objs:
        obj._state.adding = False
        obj._state.db = alias
    return objs


def inserted_fields(model: type[Model], numbered: bool) -> list[Field]:
    """The columns an insert writes: all but generated ones, and the key when the database
    numbers it."""
    return [
        field
        for field in model._meta.concrete_fields
        if not field.generated and not (numbered and field.primary_key)
    ]


@cache
def insert_values_sql(model: type[Model], numbered: bool, rows: int, alias: str) -> str:
    quote = connections[alias].ops.quote_name
    fields = inserted_fields(model, numbered)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    returning = f" RETURNING {quote(model._meta.pk.column)}" if numbered else ""
    return (
        f"INSERT INTO {quote(model._meta.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([row] * rows)}{returning}"
    )


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
