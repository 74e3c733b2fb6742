"""Live events for logged requests (the WebSocket stream lands with the analytics issue)."""

from __future__ import annotations

from collections.abc import Callable

from .models import RequestLog

# Callables run after each committed batch; the live stream and alerts hook in here.
listeners: list[Callable[[list[RequestLog]], None]] = []


def publish_logged(rows: list[RequestLog]) -> None:
    for listener in listeners:
        listener(rows)
