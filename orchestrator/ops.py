"""Small operational helpers shared by the sweeper and the metrics endpoint.

The sweeper calls `record_sweep()` at the end of every pass; `/metrics` reads the timestamp back
(`last_sweep()`) and reports the lag, so an alert fires when no control worker is sweeping.
The value lives in Redis, so any replica can read what any worker wrote.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis
from django.conf import settings

logger = logging.getLogger("switchyard.ops")

LAST_SWEEP_KEY = "switchyard:last_sweep"
# Long enough to outlive any sensible alert window; a stale key still shows a huge lag.
LAST_SWEEP_TTL_S = 7 * 86400

_clients: dict[tuple[int, str], redis.Redis] = {}
_clients_lock = threading.Lock()


def redis_client(url: str | None = None) -> redis.Redis:
    """A Redis client for `url` (default `REDIS_URL`), one connection pool per process."""
    url = url or settings.REDIS_URL
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
                _clients[key] = client
    return client


def record_sweep(now: float | None = None) -> None:
    """Remember when the sweeper last completed a pass (Unix time, in Redis).

    Never raises: a Redis hiccup must not break the sweep itself.
    """
    stamp = time.time() if now is None else now
    try:
        redis_client().set(LAST_SWEEP_KEY, repr(stamp), ex=LAST_SWEEP_TTL_S)
    except Exception:
        logger.warning("could not record the sweep time in Redis", exc_info=True)


def last_sweep() -> float | None:
    """Unix time of the last recorded sweep, or None if none was recorded (or it expired)."""
    raw = redis_client().get(LAST_SWEEP_KEY)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
