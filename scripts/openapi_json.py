"""Print the daemon's OpenAPI document (what ``GET /openapi.json`` answers) as JSON.

    python scripts/openapi_json.py > clients/typescript/openapi.json

The app is built as ``bastion serve`` builds it (dashboard included) over a throwaway home;
the document does not depend on the home. ``clients/typescript`` generates its types from
it (``npm run generate``); tests/clients/test_typescript.py checks they match a live daemon's.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bastion.api import create_app
from bastion.app import Home
from bastion.config import load_config


def document() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bastion-openapi-") as tmp:
        cfg = load_config(Path(tmp) / "home", env={"BASTION_VAULT_BACKEND": "encrypted-file"})
        with Home.init(cfg) as home:
            app = create_app(home, port=8, token="x" * 43)
            return app.openapi()


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
