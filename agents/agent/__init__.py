"""The Switchyard agent: a Django-free Celery worker that claims, runs and reports jobs.

Only the standard library, celery, kombu, httpx and asyncssh may be imported from this package,
so that an agent host can ``pip install switchyard[agent]`` without the control plane's
dependencies.
"""

from importlib import metadata

try:
    __version__ = metadata.version("switchyard")
except metadata.PackageNotFoundError:
    __version__ = "0+unknown"
