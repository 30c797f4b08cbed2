"""Paginators for the runs list that never count a million rows.

A list page needs its own rows and whether more follow; an exact total over millions of runs
is a full scan for a figure nobody reads. Two ways to bound the count:

- ``CappedPaginator`` (filters, task search): counts at most ``COUNT_CAP`` + 1 matching rows,
  and past that the page says "more than 1,000". A dense filter ("failed", "last hour") stops
  after a thousand rows.
- ``LookaheadPaginator`` (search inside arguments, which no index serves): a sparse match
  (one run in a thousand) would make even a capped count read the whole table. It counts only
  up to one row past the current page, in the list's own order, so the scan stops as soon as
  the page is full: a next page is offered while more rows follow.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.utils.functional import cached_property

# Enough for 20 pages of 50, and a count that stops after a thousand rows.
COUNT_CAP = 1_000


class CappedPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: COUNT_CAP + 1].count()

    @property
    def more_than(self) -> int | None:
        """The figure to say "more than" of, or None when the count is exact."""
        return COUNT_CAP if self.count > COUNT_CAP else None


class LookaheadPaginator(Paginator):
    def __init__(self, object_list: Any, per_page: int, *, page_number: int, **kwargs: Any):
        super().__init__(object_list, per_page, **kwargs)
        self.page_number = max(page_number, 1)

    @cached_property
    def count(self) -> int:
        start = (self.page_number - 1) * self.per_page
        window = self.object_list[start : start + self.per_page + 1]
        return start + len(window.values_list("pk", flat=True))

    @property
    def more_than(self) -> int | None:
        end = self.page_number * self.per_page
        return end if self.count > end else None


class RunChangeList(ChangeList):
    def get_results(self, request: Any) -> None:
        super().get_results(request)
        # The unfiltered total would be a COUNT over the whole table: never shown.
        self.full_result_count = None
        more_than = self.paginator.more_than
        self.capped = more_than is not None
        self.count_cap = f"{more_than:,}" if more_than is not None else ""
