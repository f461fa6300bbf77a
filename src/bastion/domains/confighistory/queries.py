"""SQL of the ``config_versions`` table (config_history namespace)."""

from __future__ import annotations

from bastion.store.hot import HotQuery
from bastion.store.repo import Sort

COLUMNS = (
    "id",
    "ts",
    "target",
    "action",
    "author",
    "hash",
    "size",
    "withheld",
    "rollback_of",
)
#: Everything but the content (a listing never reads the texts).
SELECT = ", ".join(COLUMNS)

INSERT = (
    "INSERT INTO config_versions (ts, target, action, author, hash, size, content, withheld,"
    " rollback_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
GET = f"SELECT {SELECT}, content FROM config_versions WHERE id = ?"
LATEST = f"SELECT {SELECT}, content FROM config_versions WHERE target = ? ORDER BY id DESC LIMIT 1"
TARGETS = "SELECT DISTINCT target FROM config_versions"

SORT = Sort({"id": "id", "ts": "ts"}, default="id", types={"id": int, "ts": float})

INDEXES = ("config_versions_target_id",)

#: Hot queries and the index each must use (tests/domains assert the plans).
HOT: tuple[HotQuery, ...] = (
    HotQuery("latest", LATEST, ("services/speech.toml",), "config_versions_target_id"),
    HotQuery(
        "by_target",
        f"SELECT {SELECT} FROM config_versions WHERE target = ? AND id < ? ORDER BY id DESC"
        " LIMIT 50",
        ("bastion.toml", 1_000_000),
        "config_versions_target_id",
    ),
)
