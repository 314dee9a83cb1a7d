"""Model instances from hand-written SELECTs.

For the few queries on the agent-report hot path, compiling the ORM query (joins, deferred
fields, a subquery, `select_for_update(of=…)`) cost several times more CPU than PostgreSQL spent
running it: locking a run for a report took about 2 ms to compile and 0.2 ms to execute. Those
queries are written once as SQL; `ModelColumns` lists a model's columns for such a SELECT and
turns its part of a row into an instance exactly as the ORM would (the same database converters,
`Model.from_db`, so unselected fields are deferred and load lazily).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from django.db.models import Model


class ModelColumns:
    """The columns of `model` under table alias `alias` (without `exclude`), and the instance
    made from their values in a row."""

    def __init__(self, model: type[Model], alias: str, *, exclude: Collection[str] = ()) -> None:
        self.model = model
        self.alias = alias
        self.fields = [f for f in model._meta.concrete_fields if f.name not in exclude]
        self.attnames = [f.attname for f in self.fields]
        self.table = f'"{model._meta.db_table}" {alias}'
        self.sql = ", ".join(f'{alias}."{field.column}"' for field in self.fields)
        self._converters: dict[str, list[tuple[int, list, Any]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def converters(self, connection) -> list[tuple[int, list, Any]]:
        """(position, converters, column) for the fields whose database values need converting
        on this connection (JSON, UUIDs on SQLite, …), worked out once per connection alias."""
        found = self._converters.get(connection.alias)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                convert = connection.ops.get_db_converters(column) + column.get_db_converters(
                    connection
                )
                if convert:
                    found.append((index, convert, column))
            self._converters[connection.alias] = found
        return found

    def load(self, row: Sequence[Any], start: int, connection) -> Model:
        """The instance made from `row[start : start + len(self)]`."""
        values = list(row[start : start + len(self.fields)])
        for index, convert, column in self.converters(connection):
            value = values[index]
            for converter in convert:
                value = converter(value, column, connection)
            values[index] = value
        return self.model.from_db(connection.alias, self.attnames, values)

    def load_all(self, rows: Sequence[Sequence[Any]], connection) -> list[Model]:
        return [self.load(row, 0, connection) for row in rows]


def key_param(model: type[Model], value: Any, connection) -> Any:
    """`value` as the database takes `model`'s primary key (UUIDs are hex text on SQLite)."""
    return model._meta.pk.get_db_prep_value(value, connection)
