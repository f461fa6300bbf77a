"""Typed access to ``config_versions``: one row per change of ``bastion.toml`` or of a
service spec, with its content, SHA-256, author and time.

A version is recorded only when it differs from the latest one of its file (the hash): the
services watcher, the API and the CLI may all look at the same edit, and it is one change.
The read of the latest version and the insert run in one write transaction (``BEGIN
IMMEDIATE``), so two processes recording the same edit record it once.

Secrets never enter the history. Specs hold references (``secret:scope/name``) and a spec
whose ``env`` holds a credential is refused before it runs; but a file is text, and a
credential may sit in a comment, an ``argv`` item or a value ``allow_plaintext`` let
through. So every text is checked with :mod:`bastion._credentials` -- the whole text (known
key formats, private keys, URLs with a password, wherever they are) and every parsed value
under its key -- and a text that fails is **withheld**: its hash, size and the reason are
recorded, never the text, and it cannot be rolled back to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from bastion._credentials import find_credential
from bastion.domains.confighistory import queries as q
from bastion.store.engine import Row, WriteTx
from bastion.store.repo import Page, Repo, Where, paginate

__all__ = [
    "AUTHORS",
    "CONFIG_TARGET",
    "ConfigHistoryRepo",
    "ConfigVersion",
    "content_hash",
    "service_target",
    "withheld_reason",
]

#: Who made a change: the CLI (a rollback), the API (PUT/DELETE /v1/services/{name}), or an
#: edit of the file itself.
AUTHORS = ("cli", "api", "file")
#: The target name of the home's configuration file.
CONFIG_TARGET = "bastion.toml"
_SERVICES_PREFIX = "services/"


def service_target(name: str) -> str:
    """The target of service ``name``'s spec: ``services/<name>.toml``."""
    return f"{_SERVICES_PREFIX}{name}.toml"


def content_hash(text: str) -> str:
    """SHA-256 of the text (UTF-8), hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def withheld_reason(text: str) -> str | None:
    """Why ``text`` must not be stored (it holds something that looks like a credential), or
    None. Names the key and the rule, never the value."""
    found = find_credential("the file", text)
    if found is not None:
        return f"the file holds {found[1]}"
    import tomllib

    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None  # not TOML: the whole-text check above is what applies
    found = find_credential("", data)
    if found is not None:
        return f"{found[0]} looks like {found[1]}"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One recorded version of one file (``content`` only when read by id or as the
    latest; None for a deletion or a withheld text)."""

    id: int
    ts: float
    target: str
    action: str  # created | changed | deleted | rollback
    author: str  # cli | api | file
    hash: str | None
    size: int | None
    withheld: str | None
    rollback_of: int | None
    content: str | None = None

    @property
    def service(self) -> str | None:
        """The service a spec version belongs to (None for bastion.toml)."""
        if self.target.startswith(_SERVICES_PREFIX) and self.target.endswith(".toml"):
            return self.target[len(_SERVICES_PREFIX) : -len(".toml")]
        return None

    @property
    def deleted(self) -> bool:
        """The file did not exist in this version."""
        return self.hash is None

    def to_dict(self) -> dict[str, Any]:
        """The version as JSON-ready data (without its content)."""
        data = dataclasses.asdict(self)
        del data["content"]
        data["service"] = self.service
        return data


def _version(row: Row) -> ConfigVersion:
    return ConfigVersion(*row)


class ConfigHistoryRepo(Repo):
    """``config_versions`` on one database (bastion.db)."""

    __slots__ = ()

    def record(
        self,
        target: str,
        content: str | None,
        author: str,
        *,
        rollback_of: int | None = None,
        ts: float | None = None,
    ) -> ConfigVersion | None:
        """Record ``content`` (None: the file is gone) as ``target``'s newest version, unless
        it is the latest already; returns the new version or None."""
        found: ConfigVersion | None = self.db.write(
            lambda tx: self.record_tx(tx, target, content, author, rollback_of=rollback_of, ts=ts)
        )
        return found

    def record_tx(
        self,
        tx: WriteTx,
        target: str,
        content: str | None,
        author: str,
        *,
        rollback_of: int | None = None,
        ts: float | None = None,
    ) -> ConfigVersion | None:
        """:meth:`record` inside the caller's write unit (with a file write, say: if the
        write fails, the version is rolled back with it)."""
        if author not in AUTHORS:
            raise ValueError(f"author must be one of {AUTHORS}, got {author!r}")
        digest = None if content is None else content_hash(content)
        row = tx.query_one(q.LATEST, (target,))
        latest = None if row is None else _version(row)
        if rollback_of is None and (
            (latest is None and content is None) or (latest is not None and latest.hash == digest)
        ):
            return None  # nothing new: the same text (or still no file)
        if rollback_of is not None:
            action = "rollback"
        elif content is None:
            action = "deleted"
        elif latest is None or latest.deleted:
            action = "created"
        else:
            action = "changed"
        withheld = None if content is None else withheld_reason(content)
        stored = None if withheld else content
        size = None if content is None else len(content.encode("utf-8"))
        stamp = time.time() if ts is None else ts
        version_id = tx.insert(
            q.INSERT, (stamp, target, action, author, digest, size, stored, withheld, rollback_of)
        )
        return ConfigVersion(
            version_id, stamp, target, action, author, digest, size, withheld, rollback_of, stored
        )

    def record_specs(self, texts: Mapping[str, str | None], author: str) -> list[ConfigVersion]:
        """Record each service's spec text (None: its file was removed), all in one write;
        the new versions (unchanged specs add none)."""

        recorded: list[ConfigVersion] = self.db.write(
            lambda tx: self.record_specs_tx(tx, texts, author)
        )
        return recorded

    def record_specs_tx(
        self, tx: WriteTx, texts: Mapping[str, str | None], author: str
    ) -> list[ConfigVersion]:
        """:meth:`record_specs` inside the caller's write unit ``tx`` (in name order)."""
        found = []
        for name, text in sorted(texts.items()):
            version = self.record_tx(tx, service_target(name), text, author)
            if version is not None:
                found.append(version)
        return found

    def get(self, version_id: int) -> ConfigVersion | None:
        """Version ``version_id`` with its content, or None."""
        row = self.db.lookup(q.GET, (version_id,))
        return None if row is None else _version(row)

    def latest(self, target: str) -> ConfigVersion | None:
        """``target``'s newest version with its content, or None."""
        row = self.db.lookup(q.LATEST, (target,))
        return None if row is None else _version(row)

    def targets(self) -> set[str]:
        """Every file with a recorded version."""
        return {str(row[0]) for row in self.db.query(q.TARGETS)}

    def query(
        self,
        *,
        target: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[ConfigVersion]:
        """Versions (without content), newest first by default; ``target`` narrows to one
        file; ``cursor`` pages on."""
        return paginate(
            self.db,
            select=q.SELECT,
            table="config_versions",
            where=Where(q.COLUMNS).eq("target", target),
            sort=q.SORT,
            sort_key="id",
            direction="desc" if newest_first else "asc",
            make=_version,
            limit=limit,
            cursor=cursor,
        )
