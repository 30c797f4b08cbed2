import pytest

from taskmill.compat import TaskResultStatus
from tests.testapp import tasks


@pytest.mark.django_db(transaction=True)
def test_enqueue_and_run(run_worker):
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    run_worker("--burst")
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
