"""FastAPI's check for ``pydantic.v1`` models without importing ``pydantic.v1``
(bastion.api.fastapi_v1, issue 22 §7): building every route of the app leaves ``pydantic.v1``
unimported, and a v1 model is still refused once ``pydantic.v1`` exists.

Each case runs in a fresh interpreter: the question is what the process has imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fastapi.utils

from bastion.api import fastapi_v1

BUILD = """
import json, sys
from pathlib import Path
from bastion.api import create_app
from bastion.app import Home
from bastion.config import load_config

home = Home.init(load_config(Path(sys.argv[1])))
try:
    app = create_app(home, port=48123, supervise=True)  # every router and the dashboard
    # The document is built from the same fields as the routes.
    operations = sum(len(ops) for ops in app.openapi()["paths"].values())
finally:
    home.close()
print(json.dumps({"v1": "pydantic.v1" in sys.modules, "operations": operations}))
"""

REFUSED = """
import bastion.api.app  # installs the short-circuit
from fastapi import APIRouter
from fastapi.exceptions import PydanticV1NotSupportedError
from pydantic.v1 import BaseModel

class Old(BaseModel):
    name: str

router = APIRouter()
try:
    @router.get("/old")
    def old(item: Old) -> Old:
        return item
except PydanticV1NotSupportedError as err:
    print("refused:", err)
else:
    print("accepted")
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_short_circuit_is_in_front_of_fastapis_check() -> None:
    # Fails on a FastAPI that no longer checks through fastapi.utils (see the module's
    # docstring): the routes would then be built with pydantic.v1 imported again.
    assert fastapi_v1.installed()
    assert fastapi_v1.install()  # a second install is a no-op
    check = fastapi.utils.annotation_is_pydantic_v1
    assert check.__wrapped_v1_check__.__module__ == "fastapi._compat.shared"  # type: ignore[attr-defined]
    assert not getattr(check.__wrapped_v1_check__, "__wrapped_v1_check__", None)  # type: ignore[attr-defined]


def test_building_the_whole_app_does_not_import_pydantic_v1(tmp_path: Path) -> None:
    seen = json.loads(_python(BUILD, str(tmp_path / "home")))
    assert seen["operations"] > 40
    assert seen["v1"] is False


def test_a_pydantic_v1_model_is_still_refused() -> None:
    out = _python(REFUSED)
    assert out.startswith("refused:"), out
    assert "pydantic.v1 models are no longer supported" in out


def test_route_and_model_annotations_are_objects_not_strings() -> None:
    # Postponed annotations (strings) are turned back into objects by FastAPI and pydantic at
    # start-up, one compiled ForwardRef each: the route modules and their models declare real
    # objects (see the comment at the top of bastion/api/routes/*.py).
    import importlib

    from fastapi.routing import APIRoute
    from pydantic import BaseModel

    from bastion.api.app import ROUTERS

    modules = [importlib.import_module(f"bastion.api.routes.{name}") for name in ROUTERS]
    modules += [
        importlib.import_module(f"bastion.api.{name}")
        for name in ("models", "metrics_series", "dashboard.data", "dashboard.routes")
    ]
    seen = 0
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
            ):
                strings = [k for k, v in value.__annotations__.items() if isinstance(v, str)]
                assert not strings, (value, strings)
                seen += 1
        router = getattr(module, "router", None)
        for route in getattr(router, "routes", ()):
            if isinstance(route, APIRoute):
                hints = route.endpoint.__annotations__
                assert not [k for k, v in hints.items() if isinstance(v, str)], route.path
                seen += 1
    assert seen > 60
