"""``python -m examples.agent_desktop serve --home DIR``: see :mod:`examples.agent_desktop.serve`."""

import sys

from examples.agent_desktop.serve import main

sys.exit(main())
