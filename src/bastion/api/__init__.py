"""bastion's loopback HTTP API (FastAPI): ``create_app(home, port=…)`` and the daemon server.

Only this package and ``bastion.cli`` (inside the ``serve`` command) import the server stack.
"""

from bastion.api.app import create_app

__all__ = ["create_app"]
