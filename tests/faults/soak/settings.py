"""The soak's settings: the test settings, plus a queue whose runs share a concurrency limit
(``QUEUE_LIMITS``), so that the chaos also meets a queue limit (issue 23)."""

from __future__ import annotations

import copy

from tests.settings import *  # noqa: F403
from tests.settings import TASKS as _TASKS

from .profiles import METERED_LIMIT, METERED_QUEUE

TASKS = copy.deepcopy(_TASKS)
TASKS["default"]["QUEUES"].append(METERED_QUEUE)
TASKS["default"]["OPTIONS"]["QUEUE_LIMITS"][METERED_QUEUE] = {"concurrency_limit": METERED_LIMIT}
