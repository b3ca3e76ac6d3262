"""A read-only admin: the tick owns these rows, people only look."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from dumbwaiter.models import FunctionState, HistoryEntry


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
        "error_class",
    ]
    list_filter = ["status"]
    search_fields = ["name"]
    ordering = ["name"]
    exclude = ["value", "lease_token", "claimed_by_lock_scope"]


@admin.register(HistoryEntry)
class HistoryEntryAdmin(ReadOnlyAdmin):
    list_display = ["name", "computed_at", "duration"]
    search_fields = ["name"]
    ordering = ["-id"]
    exclude = ["value"]
