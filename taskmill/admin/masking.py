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
from ..models import Run, Schedule

MASK = "********"
ARGUMENTS_PERMISSION = "taskmill.view_run_arguments"


def may_see_arguments(request: HttpRequest) -> bool:
    return request.user.has_perm(ARGUMENTS_PERMISSION)


def masked_keys() -> set[str]:
    return {str(key).lower() for key in setting("TASKMILL_ADMIN_MASKED_KEYS") or ()}


def touches_masked_key(lookup: str, value: Any) -> bool:
    """Whether searching the arguments by ``lookup`` ("nested__token__startswith") and
    ``value`` involves a masked key, on the way down or inside the value compared: such a
    search would tell the hidden value, one guess at a time."""
    keys = masked_keys()
    return any(part.lower() in keys for part in lookup.split("__")) or _holds_key(value, keys)


def _holds_key(value: Any, keys: set[str]) -> bool:
    if isinstance(value, dict):
        return any(str(k).lower() in keys or _holds_key(v, keys) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_key(item, keys) for item in value)
    return False


def hook_masks_arguments() -> bool:
    """Whether the project masks arguments with its own hook: what it hides cannot be told
    from the outside, so no search may look inside positional arguments."""
    return bool(setting("TASKMILL_ADMIN_MASK"))


def masked_arguments(run: Run | Schedule) -> tuple[Any, Any]:
    """A run's (or a schedule's) arguments as the pages show them; the hook gets the object."""
    keys = masked_keys()
    args, kwargs = _masked(run.args, keys), _masked(run.kwargs, keys)
    hook = setting("TASKMILL_ADMIN_MASK")
    if hook:
        function = import_string(hook) if isinstance(hook, str) else hook
        args, kwargs = function(run, args, kwargs)
    return args, kwargs


def masked_value(value: Any) -> Any:
    return _masked(value, masked_keys())


def unmasked(edited: Any, stored: Any) -> Any:
    """What an edit form writes back: ``edited`` (shown masked, then edited), with every
    masked key still holding the mask given back its stored value, at any depth. A masked
    key given a new value takes it: the operator may replace a secret, never read it."""
    keys = masked_keys()
    if isinstance(edited, dict) and isinstance(stored, dict):
        return {
            key: stored[key]
            if str(key).lower() in keys and item == MASK and key in stored
            else unmasked(item, stored.get(key))
            for key, item in edited.items()
        }
    if isinstance(edited, list) and isinstance(stored, list) and len(edited) == len(stored):
        return [unmasked(item, old) for item, old in zip(edited, stored, strict=True)]
    return edited


def _masked(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {
            key: MASK if str(key).lower() in keys else _masked(item, keys)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, keys) for item in value]
    return value
