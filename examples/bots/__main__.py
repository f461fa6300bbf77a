"""``python -m examples.bots``: the ``bots`` command line (see ``cli.py``)."""

import sys

from examples.bots.cli import main

sys.exit(main())
