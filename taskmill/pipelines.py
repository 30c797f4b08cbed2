"""Pipelines that pass results: a run enqueued with ``depends_on`` reads what its dependencies
returned (``context.dependency_results``), in the order it named them.

The order is kept by the dependency links themselves: they are inserted in the order given
(``followups.settle_new_dependent``), so their ids sort as the caller wrote them.
"""

from __future__ import annotations

from typing import Any

from .models import RunDependency


def dependency_results(database: str, run_id: int) -> dict[str, Any]:
    """Result id -> return value of each run ``run_id`` depends on, in the order given.

    A dependency that failed or was cancelled (a step enqueued with
    ``on_dependency_failure="run"``) returned nothing: its value is None."""
    links = (
        RunDependency.objects.using(database)
        .filter(run_id=run_id)
        .order_by("id")
        .values_list("depends_on_id", "depends_on__return_value")
    )
    return {str(depends_on): value for depends_on, value in links}
