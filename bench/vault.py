"""Vault benchmarks (issue 5), ratios against raw baselines measured in the same run.

- encrypted-file ``get`` through the public API vs a raw AES-256-GCM decrypt of one row read
  from SQLite (apsw, prepared statement, no index, no audit): target <= 10x the raw time;
  ``set`` likewise against a raw encrypt + INSERT in its own transaction (reported);
- ``keyrings.cryptfile`` get (Argon2id on every call) printed beside ours;
- keychain (only inside a D-Bus session with an unlocked Secret Service, e.g.
  ``dbus-run-session -- sh -c 'echo -n pw | gnome-keyring-daemon --unlock
  --components=secrets; .venv/bin/python bench/vault.py'``): our set+get+delete round trip vs
  raw ``keyring`` on the same Secret Service: target <= 1.2x; ``list``/``status`` make 0
  keychain calls (counted); ``get_many`` of 20 keys vs one ``get``: target <= 2x (one
  Secret Service batch against one round trip), with 20 single gets printed beside it.

Run: ``.venv/bin/python bench/vault.py [--gets N] [--keychain-rounds N]``
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bastion.app import Home
from bastion.config import load_config
from bastion.vault import Vault

FAST = {"BASTION_VAULT_ARGON2_MEMORY_KIB": "65536", "BASTION_VAULT_ARGON2_TIME_COST": "3"}


def per_op(n: int, fn: Any) -> float:
    """Best of 5 runs of ``n`` calls, seconds per call."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def raw_baseline(root: Path, n: int) -> tuple[float, float]:
    key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(key)
    conn = apsw.Connection(str(root / "raw.db"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE v (name TEXT PRIMARY KEY, nonce BLOB, ct BLOB) WITHOUT ROWID")
    aad = b"global\x00API_KEY\x001"
    nonce = os.urandom(12)
    conn.execute(
        "INSERT INTO v VALUES ('API_KEY', ?, ?)", (nonce, aead.encrypt(nonce, b"sk-x" * 8, aad))
    )

    def get() -> None:
        row = conn.execute("SELECT nonce, ct FROM v WHERE name = ?", ("API_KEY",)).fetchone()
        aead.decrypt(row[0], row[1], aad).decode()

    def put() -> None:
        nonce = os.urandom(12)
        with conn:
            conn.execute(
                "INSERT OR REPLACE INTO v VALUES ('API_KEY', ?, ?)",
                (nonce, aead.encrypt(nonce, b"sk-y" * 8, aad)),
            )

    result = per_op(n, get), per_op(max(n // 20, 50), put)
    conn.close()
    return result


def encrypted(root: Path, n: int) -> tuple[float, float]:
    cfg = load_config(root / "home", env={"BASTION_VAULT_BACKEND": "encrypted-file", **FAST})
    Home.init(cfg).close()
    key = base64.b64encode(os.urandom(32)).decode()
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": key}) as vault:
        vault.set("API_KEY", "sk-x" * 8)
        get = per_op(n, lambda: vault.get("API_KEY").reveal())
        put = per_op(max(n // 20, 50), lambda: vault.set("API_KEY", "sk-y" * 8))
    return get, put


def cryptfile(root: Path) -> float | None:
    try:
        from keyrings.cryptfile.cryptfile import CryptFileKeyring
    except ImportError:
        return None
    kr = CryptFileKeyring()
    kr.file_path = str(root / "cryptfile.cfg")  # type: ignore[attr-defined]
    kr.keyring_key = "bench passphrase"
    kr.set_password("svc", "API_KEY", "sk-x" * 8)
    return per_op(3, lambda: kr.get_password("svc", "API_KEY"))


class Counting:
    """Wraps a keyring backend and counts the calls that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def keychain(root: Path, rounds: int) -> None:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        print("keychain: skipped (no D-Bus session; see the module docstring)")
        return
    from keyring.backends.SecretService import Keyring

    raw = Keyring()
    service = "bastion-bench-raw"

    def raw_round() -> None:
        raw.set_password(service, "global/API_KEY", "sk-x" * 8)
        raw.get_password(service, "global/API_KEY")
        raw.delete_password(service, "global/API_KEY")

    cfg = load_config(
        root / "khome",
        env={"BASTION_VAULT_BACKEND": "keychain", "BASTION_VAULT_SERVICE": "bastion-bench"},
    )
    Home.init(cfg).close()
    counting = Counting(Keyring())
    with Vault.open(cfg, keyring_backend=counting) as vault:
        vault.fingerprint("warm up")  # the per-install fingerprint key, read once

        def ours_round() -> None:
            vault.set("API_KEY", "sk-x" * 8)
            vault.get("API_KEY").reveal()
            vault.delete("API_KEY")

        # Interleave the two so drift on a shared machine hits both alike.
        raw_t, ours_t = [], []
        for _ in range(3):
            raw_t.append(per_op(rounds, raw_round))
            ours_t.append(per_op(rounds, ours_round))
        r, o = min(raw_t), min(ours_t)
        print(
            f"keychain set+get+delete: ours {o * 1e3:.1f} ms vs raw keyring {r * 1e3:.1f} ms"
            f" = {o / r:.2f}x (target <= 1.2x)"
        )
        raw.set_password(service, "global/API_KEY", "sk-x" * 8)
        vault.set("API_KEY", "sk-x" * 8)
        rg = per_op(rounds, lambda: raw.get_password(service, "global/API_KEY"))
        og = per_op(rounds, lambda: vault.get("API_KEY").reveal())
        print(
            f"keychain get: ours {og * 1e3:.2f} ms vs raw {rg * 1e3:.2f} ms = {og / rg:.2f}x"
            " (target <= 1.2x)"
        )
        for i in range(100):
            vault.set(f"K{i}", "v")
        before = counting.calls
        for _ in range(100):
            vault.list()
            vault.status(["K1", "MISSING"])
        print(f"keychain calls during 100 list + 100 status: {counting.calls - before}")
        for i in range(100):
            vault.delete(f"K{i}")
        vault.delete("API_KEY")
        raw.delete_password(service, "global/API_KEY")
    # get_many batches through the Secret Service itself (a wrapped keyring would not).
    with Vault.open(cfg, keyring_backend=Keyring()) as vault:
        for i in range(20):
            vault.set(f"M{i:02d}", "sk-x" * 8, scope="bench")
        vault.fingerprint("warm up")
        single_t, many_t = [], []
        for _ in range(3):
            single_t.append(per_op(rounds, lambda: vault.get("M00", "bench").reveal()))
            many_t.append(per_op(rounds, lambda: vault.get_many(scope="bench")))
        loop = per_op(1, lambda: [vault.get(f"M{i:02d}", "bench") for i in range(20)])
        one, many = min(single_t), min(many_t)
        print(
            f"keychain 20 keys: get_many {many * 1e3:.1f} ms vs one get {one * 1e3:.1f} ms = "
            f"{many / one:.2f}x (target <= 2x); 20 gets one by one {loop * 1e3:.0f} ms"
        )
        vault.delete_scope("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=20000)
    parser.add_argument(
        "--keychain-rounds",
        type=int,
        default=20,
        help="keychain round trips per timing (each takes milliseconds)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw_get, raw_set = raw_baseline(root, args.gets)
        our_get, our_set = encrypted(root, args.gets)
        print(
            f"encrypted-file get: ours {our_get * 1e6:.1f} us vs raw AES-GCM+SQLite "
            f"{raw_get * 1e6:.1f} us = {our_get / raw_get:.2f}x (target <= 10x)"
        )
        print(
            f"encrypted-file set: ours {our_set * 1e6:.1f} us vs raw encrypt+INSERT "
            f"{raw_set * 1e6:.1f} us = {our_set / raw_set:.2f}x (reported)"
        )
        slow = cryptfile(root)
        if slow is not None:
            print(
                f"keyrings.cryptfile get: {slow * 1e3:.0f} ms (Argon2id per call) = "
                f"{slow / our_get:,.0f}x ours"
            )
        keychain(root, args.keychain_rounds)


if __name__ == "__main__":
    main()
