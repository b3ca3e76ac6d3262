"""A read-only admin: the tick owns these rows, people look and run."""

from __future__ import annotations

import logging
import reprlib
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from dumbwaiter import specs
from dumbwaiter.models import FunctionState, HistoryEntry
from dumbwaiter.serializers import get_serializer
from dumbwaiter.storage import unseal

logger = logging.getLogger("dumbwaiter.admin")

_preview = reprlib.Repr()
_preview.maxstring = 200
_preview.maxother = 200
_preview.maxlevel = 3


def preview(name: str, payload: bytes | memoryview | None) -> str:
    """A short repr of a stored value, or why there is none to show."""
    if payload is None:
        return "-"
    body = unseal(name, bytes(payload))
    if body is None:
        return "(cannot be read: the signature does not match)"
    try:
        value = get_serializer().deserialize(body)
    except Exception as exc:
        return f"(cannot be read: {type(exc).__name__})"
    return _preview.repr(value)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FunctionState)
class FunctionStateAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "status",
        "last_started",
        "duration",
        "next_due",
        "value_computed_at",
        "error_class",
    ]
    list_filter = ["status"]
    search_fields = ["name"]
    ordering = ["name"]
    actions = ["run_now"]
    fields = [
        "name",
        "status",
        "last_started",
        "last_finished",
        "duration",
        "next_due",
        "value_computed_at",
        "value_preview",
        "error_class",
        "error_message",
        "error_at",
        "error_traceback_block",
        "claimed_by",
        "lease_expires",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[FunctionState]:
        queryset = super().get_queryset(request)
        # The list never shows values; a detail page loads its one row whole.
        if request.resolver_match and request.resolver_match.url_name.endswith(
            "_changelist"
        ):
            queryset = queryset.defer("value")
        return queryset

    @admin.display(description="value")
    def value_preview(self, obj: FunctionState) -> str:
        return preview(obj.name, obj.value)

    @admin.display(description="traceback")
    def error_traceback_block(self, obj: FunctionState) -> str:
        if not obj.error_traceback:
            return "-"
        return format_html("<pre>{}</pre>", obj.error_traceback)

    def has_run_permission(self, request: HttpRequest) -> bool:
        # The action runs code, so it needs more than the view permission that
        # is enough to see this page.
        return bool(request.user.has_perm("dumbwaiter.run_function"))

    @admin.action(description="Run the selected functions now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[FunctionState]) -> None:
        from dumbwaiter.tick import Tick

        registry = specs.registry()
        names = [n for n in queryset.values_list("name", flat=True)]
        unknown = [n for n in names if n not in registry.specs]
        if unknown:
            self.message_user(
                request,
                f"Not in DUMBWAITER_FUNCTION_LIST any more: {', '.join(unknown)}",
                messages.WARNING,
            )
        names = [n for n in names if n in registry.specs]
        if not names:
            return
        report = Tick(registry, only=names, force=True).run()
        # Sorted: threads finish in any order.
        if report.succeeded:
            self.message_user(request, f"Ran: {', '.join(sorted(report.succeeded))}")
        if report.failed:
            self.message_user(
                request, f"Failed: {', '.join(sorted(report.failed))}", messages.ERROR
            )
        busy = sorted(report.locked + report.lost_claim + report.running_elsewhere)
        if busy:
            self.message_user(
                request,
                f"Already running elsewhere: {', '.join(busy)}",
                messages.WARNING,
            )


@admin.register(HistoryEntry)
class HistoryEntryAdmin(ReadOnlyAdmin):
    list_display = ["name", "computed_at", "duration"]
    list_filter = ["name"]
    search_fields = ["name"]
    ordering = ["-id"]
    fields = ["name", "computed_at", "duration", "value_preview"]
    readonly_fields = fields

    @admin.display(description="value")
    def value_preview(self, obj: HistoryEntry) -> str:
        return preview(obj.name, obj.value)
