"""The read-only admin: list and detail pages, and the run_now action."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client, override_settings
from django.utils import formats, timezone

import dumbwaiter
from dumbwaiter import clock
from dumbwaiter.models import FunctionState, HistoryEntry, Status
from dumbwaiter.serializers import get_serializer
from dumbwaiter.storage import seal

pytestmark = pytest.mark.django_db

FUNCTIONS_URL = "/admin/dumbwaiter/functionstate/"
HISTORY_URL = "/admin/dumbwaiter/historyentry/"

STARTED = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
DUE = datetime(2032, 7, 8, 9, 10, 11, tzinfo=UTC)
COMPUTED = datetime(2030, 11, 12, 13, 14, 15, tzinfo=UTC)


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {"function": "tests.functions.constant", "name": name, **extra}


def payload(name: str, value: Any) -> bytes:
    return seal(name, get_serializer().serialize(value))


def store(name: str, value: Any = None, **fields: Any) -> FunctionState:
    values: dict[str, Any] = {"status": Status.SUCCEEDED, **fields}
    if value is not None:
        values.update(value=payload(name, value), value_computed_at=COMPUTED)
    values = {
        key: clock.to_db(v) if isinstance(v, datetime) else v
        for key, v in values.items()
    }
    return FunctionState.objects.create(name=name, **values)


def shown(moment: datetime | None) -> str:
    """A datetime as the admin renders a read-only field."""
    return formats.localize(timezone.template_localtime(moment))


def page(client: Client, url: str, **kwargs: Any) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def superuser_client(client: Client) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def staff_client(*codenames: str) -> Client:
    user = User.objects.create_user("staff", "staff@example.com", "pw")
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def run_now(client: Client, *states: FunctionState) -> Any:
    return client.post(
        FUNCTIONS_URL,
        {
            "action": "run_now",
            "index": 0,
            "select_across": 0,
            "_selected_action": [str(s.pk) for s in states],
        },
        follow=True,
    )


# -- pages ----------------------------------------------------------------------


def test_list_page_shows_every_function_and_its_status(superuser_client) -> None:
    """Names with status, last run, duration and next due; no add button."""
    store("zeta", 1, status=Status.FAILED, error_class="ValueError")
    store("alpha", 2, last_started=STARTED, duration=0.412, next_due=DUE)
    store("never", status=Status.NEVER_RUN)

    html = page(superuser_client, FUNCTIONS_URL)

    positions = [html.index(f">{name}<") for name in ("alpha", "never", "zeta")]
    assert positions == sorted(positions)
    assert "ValueError" in html
    assert ">failed<" in html and ">never run<" in html and ">succeeded<" in html
    assert shown(clock.to_db(STARTED)) in html
    assert shown(clock.to_db(DUE)) in html
    assert "0.412" in html
    assert f'href="{FUNCTIONS_URL}add/"' not in html


def test_detail_page_shows_status_times_value_and_last_error(
    superuser_client,
) -> None:
    """Status, last run, next due, duration, a preview of the value, and the
    last error with its traceback; nothing can be edited."""
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "shop/reports.py", line 12, in revenue\n'
        "ValueError: <b>no rows</b>"
    )
    state = store(
        "revenue",
        ["EUR", 1234],
        status=Status.TIMED_OUT,
        last_started=STARTED,
        next_due=DUE,
        duration=1.875,
        error_class="dumbwaiter.exceptions.FunctionTimeout",
        error_message="'revenue' was still running after its timeout of 2s",
        error_traceback=traceback,
        error_at=STARTED + timedelta(seconds=2),
    )

    html = page(superuser_client, f"{FUNCTIONS_URL}{state.pk}/change/")

    assert "timed out" in html
    assert shown(state.last_started) in html
    assert shown(state.next_due) in html
    assert shown(state.value_computed_at) in html
    assert "1.875" in html
    assert "[&#x27;EUR&#x27;, 1234]" in html
    assert "dumbwaiter.exceptions.FunctionTimeout" in html
    assert "still running after its timeout of 2s" in html
    assert re.search(
        r"<pre>Traceback \(most recent call last\):\s+"
        r"File &quot;shop/reports.py&quot;, line 12, in revenue\s+"
        r"ValueError: &lt;b&gt;no rows&lt;/b&gt;</pre>",
        html,
    ), html
    assert "<b>no rows</b>" not in html
    assert 'name="_save"' not in html
    assert 'name="name"' not in html and 'name="status"' not in html


def test_the_value_preview_is_short(superuser_client) -> None:
    """A large value is previewed in a few hundred characters, not dumped."""
    state = store("big", "x" * 100_000)

    html = page(superuser_client, f"{FUNCTIONS_URL}{state.pk}/change/")

    assert "x" * 90 in html
    assert "x" * 300 not in html
    assert len(html) < 50_000


def test_an_unreadable_value_is_reported_not_raised(superuser_client) -> None:
    """A payload whose seal does not verify: the page says so."""
    state = FunctionState.objects.create(
        name="tampered", value=payload("another-name", "secret")
    )

    html = page(superuser_client, f"{FUNCTIONS_URL}{state.pk}/change/")

    assert "cannot be read" in html
    assert "secret" not in html


def test_history_pages_list_past_values_with_a_preview(superuser_client) -> None:
    """Newest first, with time and duration; the detail previews the value."""
    older = HistoryEntry.objects.create(
        name="report",
        value=payload("report", [1, 2, 3]),
        computed_at=clock.to_db(COMPUTED),
        duration=0.5,
    )
    newer = HistoryEntry.objects.create(
        name="report",
        value=payload("report", [4, 5, 6]),
        computed_at=clock.to_db(COMPUTED + timedelta(minutes=5)),
        duration=0.75,
    )

    listing = page(superuser_client, HISTORY_URL)
    detail = page(superuser_client, f"{HISTORY_URL}{older.pk}/change/")

    assert listing.index(f"{HISTORY_URL}{newer.pk}/") < listing.index(
        f"{HISTORY_URL}{older.pk}/"
    )
    assert "0.75" in listing
    assert f'href="{HISTORY_URL}add/"' not in listing
    assert "[1, 2, 3]" in detail
    assert shown(older.computed_at) in detail


# -- read-only ------------------------------------------------------------------


@pytest.mark.parametrize("url", [FUNCTIONS_URL, HISTORY_URL])
def test_nothing_can_be_added_changed_or_deleted(superuser_client, url) -> None:
    """Even a superuser gets 403 on add, change (POST) and delete, and the
    bulk delete action is not offered."""
    if url == FUNCTIONS_URL:
        obj: Any = store("calc", 1)
    else:
        obj = HistoryEntry.objects.create(
            name="calc", value=payload("calc", 1), computed_at=clock.to_db(COMPUTED)
        )
    before = list(type(obj).objects.values())

    assert superuser_client.get(f"{url}add/").status_code == 403
    assert superuser_client.post(f"{url}add/", {"name": "x"}).status_code == 403
    changed = superuser_client.post(
        f"{url}{obj.pk}/change/", {"name": "renamed", "status": "failed"}
    )
    assert changed.status_code == 403
    assert superuser_client.get(f"{url}{obj.pk}/delete/").status_code == 403
    assert (
        superuser_client.post(f"{url}{obj.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert 'value="delete_selected"' not in page(superuser_client, url)
    assert list(type(obj).objects.values()) == before


# -- the run_now action -------------------------------------------------------------


def test_a_superuser_runs_the_selected_functions_now(
    superuser_client, tmp_path
) -> None:
    """The selected functions run whatever their schedule and store their
    values; the others do not run; a message names what ran."""
    later = clock.now() + timedelta(hours=1)
    first = store("first", "old", next_due=later)
    second = store("second", "old", next_due=later)
    third = store("third", "old", next_due=later)
    entries = [
        entry("first", args=["new 1"], frequency=7200),
        entry("second", args=["new 2"], frequency=7200),
        entry("third", args=["new 3"], frequency=7200),
    ]

    with override_settings(
        DUMBWAITER_FUNCTION_LIST=entries, DUMBWAITER_LOCK_DIR=str(tmp_path)
    ):
        assert 'value="run_now"' in page(superuser_client, FUNCTIONS_URL)
        response = run_now(superuser_client, first, second)

        assert response.status_code == 200
        assert ("info", "Ran: first, second") in messages_of(response)
        assert dumbwaiter.get_value("first") == "new 1"
        assert dumbwaiter.get_value("second") == "new 2"
        assert dumbwaiter.get_value("third") == "old"
    assert FunctionState.objects.get(pk=third.pk).version == third.version
    assert HistoryEntry.objects.filter(name="first").count() == 1
    assert HistoryEntry.objects.filter(name="third").count() == 0


def test_run_now_reports_failures_and_functions_no_longer_configured(
    superuser_client, tmp_path
) -> None:
    """A failing function is recorded and shown as an error; a row whose
    function was removed from the settings is named in a warning."""
    broken = store("broken", "old")
    gone = store("gone", "old")
    entries = [{"function": "tests.functions.fail", "name": "broken"}]

    with override_settings(
        DUMBWAITER_FUNCTION_LIST=entries, DUMBWAITER_LOCK_DIR=str(tmp_path)
    ):
        response = run_now(superuser_client, broken, gone)

    shown_messages = messages_of(response)
    assert ("error", "Failed: broken") in shown_messages
    assert any(
        level == "warning" and "gone" in text for level, text in shown_messages
    ), shown_messages
    state = FunctionState.objects.get(pk=broken.pk)
    assert state.status == Status.FAILED
    assert state.error_class == "ValueError"


def test_a_staff_user_with_only_view_permission_cannot_run(tmp_path) -> None:
    """The pages open, the action is not offered, and posting it anyway runs
    nothing."""
    viewer = staff_client("view_functionstate", "view_historyentry")
    state = store("calc", "old", next_due=clock.now() + timedelta(hours=1))
    entries = [entry("calc", args=["new"], frequency=7200)]

    with override_settings(
        DUMBWAITER_FUNCTION_LIST=entries, DUMBWAITER_LOCK_DIR=str(tmp_path)
    ):
        html = page(viewer, FUNCTIONS_URL)
        assert ">calc<" in html
        assert 'value="run_now"' not in html
        page(viewer, f"{FUNCTIONS_URL}{state.pk}/change/")

        run_now(viewer, state)

        assert dumbwaiter.get_value("calc") == "old"
    assert FunctionState.objects.get(pk=state.pk).version == state.version


def test_a_staff_user_with_the_run_permission_can_run(tmp_path) -> None:
    """dumbwaiter.run_function is what the action needs."""
    runner = staff_client("view_functionstate", "run_function")
    state = store("calc", "old", next_due=clock.now() + timedelta(hours=1))
    entries = [entry("calc", args=["new"], frequency=7200)]

    with override_settings(
        DUMBWAITER_FUNCTION_LIST=entries, DUMBWAITER_LOCK_DIR=str(tmp_path)
    ):
        assert 'value="run_now"' in page(runner, FUNCTIONS_URL)
        response = run_now(runner, state)

        assert ("info", "Ran: calc") in messages_of(response)
        assert dumbwaiter.get_value("calc") == "new"


def test_the_run_permission_exists() -> None:
    """The permission the action checks is created by migrate."""
    permission = Permission.objects.get(codename="run_function")
    assert permission.content_type.app_label == "dumbwaiter"
    assert permission.content_type.model == "functionstate"
