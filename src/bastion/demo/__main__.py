"""``python -m bastion.demo [--home H]``: seed the demo services (and settings) into a home."""

from __future__ import annotations

import argparse
import sys

from bastion.app import Home
from bastion.config import load_config
from bastion.demo import seed_services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bastion.demo")
    parser.add_argument("--home", default=None, help="home to seed (default: $BASTION_HOME)")
    args = parser.parse_args(argv)
    cfg = load_config(args.home)
    Home.init(cfg).close()
    for path in seed_services(cfg):
        print(f"demo service: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
