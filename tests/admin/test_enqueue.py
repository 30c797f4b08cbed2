"""The "enqueue a run" form: arguments checked against the task's signature, nothing written
when they do not fit, and only for those allowed to enqueue."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry

from taskmill.models import Run

pytestmark = pytest.mark.django_db

URL = "/admin/taskmill/run/enqueue/"


def post(client, **fields):
    data = {"task_path": "tests.testapp.tasks.add", "args": "[]", "kwargs": "{}", **fields}
    return client.post(URL, data)


def test_a_run_is_enqueued_with_arguments_that_fit_the_signature(admin_client):
    response = post(admin_client, args="[2]", kwargs='{"b": 3}', queue_name="emails", priority="5")
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{run.pk}/change/")
    assert (run.args, run.kwargs, run.queue_name, run.priority) == ([2], {"b": 3}, "emails", 5)
    assert LogEntry.objects.get().change_message == "Enqueued from the admin"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"args": "[1, 2, 3]"},
            "do not fit tests.testapp.tasks.add(a, b): too many positional arguments",
        ),
        ({"kwargs": '{"c": 1}', "args": "[1]"}, "do not fit"),
        ({"args": "[1,"}, "positional arguments are not valid JSON"),
        ({"kwargs": "[1]"}, "must be a JSON object"),
        ({"task_path": "os.system"}, "Select a valid choice"),
    ],
)
def test_arguments_that_do_not_fit_are_refused_and_nothing_is_written(
    admin_client, fields, message
):
    response = post(admin_client, **fields)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Run.objects.exists()


def test_a_context_task_is_checked_without_its_context(admin_client):
    post(admin_client, task_path="tests.testapp.tasks.flaky", args="[1]")
    assert Run.objects.get().args == [1]


def test_only_who_may_enqueue_sees_the_form(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("v", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(user)
    assert client.get(URL).status_code == 403
    assert "Enqueue a run" not in client.get("/admin/taskmill/run/").content.decode()
    user.user_permissions.add(Permission.objects.get(codename="enqueue_run"))
    assert client.get(URL).status_code == 200


def test_the_form_is_laid_out_as_the_admins_own_forms(admin_client):
    # The admin's fieldset template and stylesheet: a row a field, help under it, required
    # labels marked, labels capitalised as the admin's are.
    page = admin_client.get(URL).content.decode()
    assert "admin/css/forms.css" in page
    assert page.count('class="form-row') == 5
    assert re.search(r'<label[^>]*class="required"[^>]*>Task:</label>', page)
    assert 'for="id_queue_name">Queue:</label>' in page
    assert "Empty: the task&#x27;s own queue." in page or "Empty: the task's own queue." in page
    assert '<div class="submit-row">' in page
