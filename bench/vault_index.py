"""Secrets list pages and status at 10,000 secrets against the same requests at 10 (issue 22).

``GET /v1/secrets?limit=100`` and ``GET /v1/secrets/status?names=`` (5 names) through the
whole app (security middleware, routing, models; in-process ASGI client), and the library's
``Vault.page`` / ``Vault.status`` under them, on two real homes (encrypted-file backend) in
the same run: one with 10 secrets, one with 10,000. Answered in SQL off an index, a page
costs its own rows: target for the API page, 10k >= 0.5x the rate at 10 (<= 2x the time).

Also the same calls returning the same number of rows at both sizes (``limit=10``): there
the only difference left is the size of the vault.

Run: ``.venv/bin/python bench/vault_index.py [--secrets 10000] [--requests 200]``
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import ratio_line
from bastion.app import Home
from bastion.config import load_config
from bastion.runfiles import TOKEN_FILE, read_token

NAMES = "KEY_00003,KEY_00042,KEY_00007,NOT_SET,KEY_00001"


@contextlib.contextmanager
def _home(root: Path, n: int) -> Iterator[Home]:
    os.environ["BASTION_VAULT_KEY"] = base64.b64encode(os.urandom(32)).decode()
    cfg = load_config(
        root, env={"BASTION_VAULT_BACKEND": "encrypted-file", "BASTION_VAULT_KEY_SOURCE": "env"}
    )
    with Home.init(cfg) as home:
        for i in range(n):
            home.vault.set(f"KEY_{i:05d}", f"value-{i}-0123456789abcdef", actor="bench")
        yield home


def _per_call(n: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


#: Paired rounds (small home, then large, alternating first): the median ratio is the figure,
#: so a burst of other load on the machine hits one pair, not a whole side.
ROUNDS = 7


def _cases(client: Any, vault: Any) -> dict[str, Callable[[], object]]:
    def get(url: str) -> Callable[[], object]:
        return lambda: client.get(url).raise_for_status()

    return {
        "GET /v1/secrets?limit=100": get("/v1/secrets?limit=100"),
        "GET /v1/secrets?limit=10 (10 rows at both sizes)": get("/v1/secrets?limit=10"),
        "GET /v1/secrets?limit=100&sort=updated_at&order=desc": get(
            "/v1/secrets?limit=100&sort=updated_at&order=desc"
        ),
        "GET /v1/secrets/status?names= (5 names)": get(f"/v1/secrets/status?names={NAMES}"),
        "Vault.page(limit=10)": lambda: vault.page(limit=10),
        "Vault.status(5 names)": lambda: vault.status(NAMES.split(",")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from bastion.api import create_app

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        sides: dict[int, dict[str, Callable[[], object]]] = {}
        for n in (10, args.secrets):
            start = time.perf_counter()
            home = stack.enter_context(_home(Path(tmp) / f"home{n}", n))
            print(f"{n:,} secrets set in {time.perf_counter() - start:.1f} s")
            token = read_token(home.config.run_dir / TOKEN_FILE)
            client = stack.enter_context(
                TestClient(
                    create_app(home, port=48124, dashboard=False),
                    base_url="http://127.0.0.1:48124",
                    headers={"Authorization": f"Bearer {token}"},
                )
            )
            sides[n] = _cases(client, home.vault)
        print(
            f"the same call at {args.secrets:,} secrets vs at 10 (rate; 0.5x = twice the time; "
            f"median of {ROUNDS} paired rounds)"
        )
        for label in sides[10]:
            small, large = sides[10][label], sides[args.secrets][label]
            small()
            large()  # warm: first statement preparations, pools
            calls = args.requests * (10 if label.startswith("Vault") else 1)
            ratios, small_t, large_t = [], [], []
            for i in range(ROUNDS):
                order = ((small, small_t), (large, large_t))
                for fn, times in order if i % 2 else reversed(order):
                    times.append(_per_call(calls, fn))
                ratios.append(small_t[-1] / large_t[-1])
            target = ">= 0.5x" if label == "GET /v1/secrets?limit=100" else "informative"
            print(
                ratio_line(
                    f"  {label}",
                    1 / statistics.median(large_t),
                    1 / statistics.median(large_t) / statistics.median(ratios),
                    target,
                )
            )


if __name__ == "__main__":
    main()
