"""What the control room hides of a run's arguments and return value.

A user without the "see arguments" permission sees none of them. Everyone else sees them
with sensitive values masked: keys named in TASKMILL_ADMIN_MASKED_KEYS (case-insensitive, at
any depth), and whatever the project's own hook (TASKMILL_ADMIN_MASK) hides.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.module_loading import import_string

from ..conf import setting
from ..models import Run

MASK = "********"
ARGUMENTS_PERMISSION = "taskmill.view_run_arguments"


def may_see_arguments(request: HttpRequest) -> bool:
    return request.user.has_perm(ARGUMENTS_PERMISSION)


def masked_arguments(run: Run) -> tuple[Any, Any]:
    keys = {str(key).lower() for key in setting("TASKMILL_ADMIN_MASKED_KEYS") or ()}
    args, kwargs = _masked(run.args, keys), _masked(run.kwargs, keys)
    hook = setting("TASKMILL_ADMIN_MASK")
    if hook:
        function = import_string(hook) if isinstance(hook, str) else hook
        args, kwargs = function(run, args, kwargs)
    return args, kwargs


def masked_value(value: Any) -> Any:
    keys = {str(key).lower() for key in setting("TASKMILL_ADMIN_MASKED_KEYS") or ()}
    return _masked(value, keys)


def _masked(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {
            key: MASK if str(key).lower() in keys else _masked(item, keys)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, keys) for item in value]
    return value
