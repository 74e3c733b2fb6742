"""Project-wide middleware for the pages and APIs that Django serves (not the proxy path)."""

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils.decorators import sync_and_async_middleware


MESSAGE = "Bad request: the URL contains a NUL character (%00), which no page or API accepts."


def _refusal(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):  # the APIs' own error shape: {"detail": "..."}
        return JsonResponse({"detail": MESSAGE}, status=400)
    return HttpResponseBadRequest(MESSAGE, content_type="text/plain")


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path:
        return True
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists())


@sync_and_async_middleware
def refuse_nul_characters(get_response):
    """A NUL character in the path or query string is a 400 naming it: PostgreSQL text
    cannot hold one, so every lookup with it would otherwise fail as a 500."""

    if iscoroutinefunction(get_response):
        async def middleware(request: HttpRequest) -> HttpResponse:
            if _has_nul(request):
                return _refusal(request)
            return await get_response(request)
    else:
        def middleware(request: HttpRequest) -> HttpResponse:
            if _has_nul(request):
                return _refusal(request)
            return get_response(request)
    return middleware
