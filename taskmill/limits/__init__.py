"""Flow control held by the database across every worker: concurrency limits per key, rate
limits, fair shares, and queue limits shared by every task of a queue (docs/limits.md).

- ``keys``: the keys a run counts under, worked out at enqueue from the task's options.
- ``rates``: ``Rate`` and the ``"100/m"`` spelling.
- ``queues``: queue limits (``OPTIONS["QUEUE_LIMITS"]``, ``set_queue_limits``).
- ``gate``: in the claim's transaction, which claimed runs may start; the others are held
  back (out of the claim's index) or, for a full queue, handed back.
- ``slots``: the SQL the gate and the release share.
- ``control``: changing a queue's limits at run time.

Importable before Django's app registry is ready: the task decorator uses ``keys``.
"""

from .rates import Rate

__all__ = ["Rate"]
