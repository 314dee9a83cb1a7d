"""WebSocket routes. Live execution streams arrive with the live-updates work."""

websocket_urlpatterns: list = []
