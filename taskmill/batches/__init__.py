"""Batches: runs enqueued together, and callbacks enqueued once when the last of them has ended
(docs/batches.md).

- ``membership.py``: which batch an enqueue joins (a context variable);
- ``opening.py``: ``taskmill.batch()``, the ``with`` block, the seal; ``get_batch()``;
- ``members.py``: enqueueing members, and adding some to a batch already open;
- ``settle.py``: counting members as they end, finishing the batch (its callbacks), in the
  transaction that lands the last outcome;
- ``sweep.py``: the repair of a batch stalled by a member that vanished (deleted by hand).
"""
