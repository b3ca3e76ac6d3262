"""Views that read values the way a project's views do, sync and async.

tests/urls.py mounts these under ``values/``. Each answers JSON with what the
readers returned, so a test can GET it and compare.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

import dumbwaiter

DEFAULT = "the default"


def _max_age(request: HttpRequest) -> float | None:
    raw = request.GET.get("max_age")
    return None if raw is None else float(raw)


def value(request: HttpRequest, name: str) -> JsonResponse:
    found = dumbwaiter.get_value(name, default=DEFAULT, max_age=_max_age(request))
    return JsonResponse({"value": found})


async def avalue(request: HttpRequest, name: str) -> JsonResponse:
    found = await dumbwaiter.aget_value(
        name, default=DEFAULT, max_age=_max_age(request)
    )
    result = await dumbwaiter.aget_result(name)
    history = await dumbwaiter.aget_history(name)
    return JsonResponse(
        {
            "value": found,
            "result": result.value,
            "status": str(result.status),
            "history": [past.value for past in history],
        }
    )


urlpatterns = [
    path("sync/<str:name>/", value),
    path("async/<str:name>/", avalue),
]
