"""A page or API that reads ClickHouse while it is away answers 503 with a message, not a 500."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse

from . import clickhouse

log = logging.getLogger(__name__)

UNAVAILABLE = ("The analytics store (ClickHouse) is not answering. No log is lost: the writers keep them and "
               "store them when it is back. Try again in a moment.")


class ClickHouseUnavailable:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not clickhouse.enabled():
            return None
        from clickhouse_connect.driver.exceptions import OperationalError

        if not isinstance(exception, OperationalError):
            return None
        log.error("ClickHouse unavailable for %s: %s", request.path, exception)
        if request.path.startswith(("/api/", "/v1/")):
            return JsonResponse({"detail": UNAVAILABLE}, status=503)
        return HttpResponse(UNAVAILABLE, status=503, content_type="text/plain; charset=utf-8")
