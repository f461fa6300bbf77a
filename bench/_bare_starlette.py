"""Baseline for bench/api.py: the same settings read on bare Starlette (no auth, no checks).

``python bench/_bare_starlette.py DB_PATH PORT``: uvicorn with uvloop + httptools, one raw
apsw read-only connection, ``GET /v1/settings/{key}`` -> the row as JSON.
"""

from __future__ import annotations

import json
import sys

import apsw
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SQL = "SELECT value, updated_at FROM settings WHERE key = ?"


def main() -> None:
    db_path, port = sys.argv[1], int(sys.argv[2])
    conn = apsw.Connection(db_path, flags=apsw.SQLITE_OPEN_READONLY)

    async def get_setting(request: Request) -> Response:
        key = request.path_params["key"]
        for value, updated_at in conn.execute(SQL, (key,)):
            return JSONResponse({"key": key, "value": json.loads(value), "updated_at": updated_at})
        return JSONResponse({"code": "not_found"}, status_code=404)

    app = Starlette(routes=[Route("/v1/settings/{key}", get_setting)])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
