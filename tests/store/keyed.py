"""The ``db_key`` run's key in a child process a test starts.

The ``db_key`` fixture (tests/conftest.py) puts the key in the environment as
``BASTION_DB_KEY``; a child script opens its database with ``KEY`` after running
``CHILD_KEY`` (None in the plaintext run, where the variable is not set).
"""

from __future__ import annotations

from collections.abc import Callable

from bastion.store import Database

CHILD_KEY = (
    "import base64 as _b64, os as _os\n"
    "from bastion.store.crypt import DatabaseKey as _DatabaseKey\n"
    "_raw = _os.environ.get('BASTION_DB_KEY')\n"
    "KEY = _DatabaseKey(_b64.b64decode(_raw)) if _raw else None\n"
)


# What the ``open_database`` fixture (tests/conftest.py) is: ``Database.open`` with the run's key.
OpenDatabase = Callable[..., Database]
