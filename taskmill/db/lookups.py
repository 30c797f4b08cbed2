"""``column IN (values)`` for the many values flow control passes, cheap on PostgreSQL.

A gate pass filters on a hundred keys and a hundred run ids at once. Django's ``__in``
writes one placeholder per value, and psycopg, binding parameters on the client, parses the
statement and quotes each of them: a millisecond of the worker's time per statement, more
than the database takes to answer it, and most of what a limit per key cost (bench
``--only limits``). On PostgreSQL the values go as one array parameter (``= ANY(%s)``);
elsewhere as ``IN``, as Django writes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models import F, Lookup, Q


class InValues(Lookup):
    """``lhs IN rhs`` for a list of plain values (strings, integers), never prepared by the
    field: they are what the column holds."""

    lookup_name = "taskmill_in_values"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if not values:
            raise EmptyResultSet  # as Django's ``__in`` does: Q() and ~Q() then work out
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]


def values_in(field: str, values: Iterable[Any]) -> Q:
    """A filter: ``field`` holds one of ``values`` (``~values_in(...)``: none of them)."""
    return Q(InValues(F(field), list(values)))


__all__ = ["InValues", "values_in"]
