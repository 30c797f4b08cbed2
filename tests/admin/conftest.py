"""Fixtures shared by the control room's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

from .control_room import make_users


@pytest.fixture(scope="module")
def users(django_db_setup, django_db_blocker) -> Iterator[dict[str, User | None]]:
    with django_db_blocker.unblock():
        made = make_users()
    yield made
    with django_db_blocker.unblock():
        User.objects.filter(pk__in=[user.pk for user in made.values() if user]).delete()
