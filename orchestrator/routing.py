"""WebSocket routes: the UI's live socket (see `executions.consumers`)."""

from django.urls import path

from executions.consumers import LiveConsumer

websocket_urlpatterns: list = [
    path("ws/live/", LiveConsumer.as_asgi()),
]
