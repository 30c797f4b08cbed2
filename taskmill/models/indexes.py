"""The index the claim query reads, shaped for each database.

PostgreSQL and SQLite get a partial index holding READY runs only, so millions of finished
runs never touch a claim. MySQL/MariaDB have no partial indexes: there ``status`` leads the
key instead, and the claim reads only the READY slice of it. Declaring it as one ``Index``
on the model keeps it alive through Django's table rebuilds (SQLite remakes tables).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

# The claim's ORDER BY: priority first, then when the run became available, then enqueue order.
CLAIM_ORDER = ["-priority", "available_at", "id"]


class ClaimIndex(models.Index):
    def __init__(self, *, name: str) -> None:
        super().__init__(fields=CLAIM_ORDER, name=name)

    def deconstruct(self) -> tuple[str, tuple, dict[str, Any]]:
        return ("taskmill.models.indexes.ClaimIndex", (), {"name": self.name})

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.features.supports_partial_indexes:
            shaped = models.Index(fields=CLAIM_ORDER, condition=Q(status="READY"), name=self.name)
        else:
            shaped = models.Index(fields=["status", *CLAIM_ORDER], name=self.name)
        return shaped.create_sql(model, schema_editor, using=using, **kwargs)
