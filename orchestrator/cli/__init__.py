"""`switchyard`: the command-line client of the Switchyard API.

It talks to the control plane over HTTP only and imports nothing but the standard library and
httpx, so it installs and runs without Django (`orchestrator/__init__.py` stays empty for it).
"""
