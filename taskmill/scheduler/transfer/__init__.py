"""Export and import of schedules as a versioned JSON document (``manage.py taskmill
export-schedules`` / ``import-schedules``).

The document holds each schedule's definition, never the scheduler's state: an imported
schedule gets its next fire time from ``Schedule.save()``, as one created in the admin does.
Import is all or nothing: the whole document is checked (structure first, then each
schedule through the model's own ``full_clean()``, then the dependency graph as it would be
after the import) before anything is written, and the writes share one transaction.

Schedules declared in code are exported (marked ``"code_owned": true``) for the record, but
an import never writes them: the code and its sync own them.
"""

from .document import FORMAT, VERSION, TransferError, dumps, export_document
from .importing import ImportReport, import_entries, parse_document

__all__ = [
    "FORMAT",
    "VERSION",
    "ImportReport",
    "TransferError",
    "dumps",
    "export_document",
    "import_entries",
    "parse_document",
]
