"""The statements that count a batch's members as they end (``Engine.add_to_batch``).

One UPDATE ... RETURNING where the database has it: the batch's row is locked by the write
itself until the outcomes' transaction ends, and its new counts come back with it. Elsewhere
(MariaDB) two statements: lock the row, then write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..models import Batch


def add_returning_sql(quote: Callable[[str], str], counters: Sequence[str]) -> str:
    """Add one parameter to each of ``counters`` (then the batch's id) on an unfinished
    batch; return whether it is sealed and how many members are still pending."""
    assignments = ", ".join(f"{quote(name)} = {quote(name)} + %s" for name in counters)
    return (
        f"UPDATE {quote(Batch._meta.db_table)} SET {assignments} "
        f"WHERE {quote('id')} = %s AND {quote('finished_at')} IS NULL "
        f"RETURNING {quote('sealed')}, {quote('total')} - {quote('succeeded')} "
        f"- {quote('failed')} - {quote('cancelled')}"
    )


def add_locked(database: str, batch_id: int, counts: dict[str, int]) -> tuple[bool, int] | None:
    """The same in two statements: lock the batch's row, then write its new counts."""
    batch = Batch.objects.using(database).select_for_update().filter(pk=batch_id).first()
    if batch is None or batch.finished_at is not None:
        return None
    for counter, number in counts.items():
        setattr(batch, counter, getattr(batch, counter) + number)
    batch.save(using=database, update_fields=list(counts))
    return batch.sealed, batch.pending
