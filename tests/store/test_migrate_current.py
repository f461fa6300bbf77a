"""An open whose migration history is already the code's reads it without the migration
engine (``bastion.store.migrate.current``; issue 22 §7), and every other history still goes
to the ``Migrator``: pending work is applied, and each bad history is refused at the open as
the engine refuses it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from bastion.app import Home
from bastion.config import Config
from bastion.errors import (
    MigrationChecksumMismatch,
    MigrationError,
    MigrationGap,
    MigrationOutOfOrder,
    MigrationUnknown,
)
from bastion.store import WriteTx
from bastion.store.migrate.current import history_is_current, package_history
from bastion.store.migrations import Migration, Namespace

M1 = Migration.sql("0001_a", "CREATE TABLE a (id INTEGER PRIMARY KEY);")
M2 = Migration.sql("0002_b", "CREATE TABLE b (id INTEGER PRIMARY KEY);")
M3 = Migration.sql("0003_c", "CREATE TABLE c (id INTEGER PRIMARY KEY);")
M1_EDITED = Migration.sql("0001_a", "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);")


def _app(*migrations: Migration) -> Namespace:
    return Namespace("app", migrations)


def _sql(cfg: Config, statement: str) -> None:
    raw = apsw.Connection(str(cfg.db_path))
    try:
        raw.execute(statement)
    finally:
        raw.close()


def _history(cfg: Config) -> list[tuple[str, str, str]]:
    raw = apsw.Connection(str(cfg.db_path))
    try:
        return [
            (str(r[0]), str(r[1]), str(r[2]))
            for r in raw.execute("SELECT namespace, id, checksum FROM schema_migrations")
        ]
    finally:
        raw.close()


def test_an_open_with_nothing_pending_loads_no_migration_engine(home: Config) -> None:
    """The common open (every CLI command, the daemon's start): the history is read and
    compared, and the runner, the declarations and what they import are never loaded."""
    Home.init(home).close()
    before = _history(home)
    probe = (
        "import json, sys\n"
        "from bastion.app import Home\n"
        "from bastion.config import load_config\n"
        "with Home.open(load_config(sys.argv[1], env={})) as home:\n"
        "    assert home.migrations_current()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(home.home)], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    engine = {
        "bastion.store.migrations",
        "bastion.store.migrate.runner",
        "bastion.store.migrate.declare",
        "bastion.store.migrate.history",
    }
    assert "bastion.store.migrate.current" in loaded
    assert sorted(loaded & engine) == []
    assert _history(home) == before


def test_the_declared_history_is_what_the_namespaces_declare(home: Config) -> None:
    """One list of namespaces: a namespace added to ``Home.namespaces`` and missed by the
    look would never be migrated."""
    Home.init(home).close()
    with Home.open(home, namespaces=[_app(M1, M2)]) as opened:
        declared = opened.declared_history()
        namespaces = opened.namespaces()
    assert declared == [(ns.name, {m.id: m.checksum for m in ns.migrations}) for ns in namespaces]
    assert [name for name, _ in declared] == ["core", "supervisor", "config_history", "app"]


def test_a_pending_migration_is_applied_at_the_open(home: Config) -> None:
    Home.init(home).close()
    Home.open(home, namespaces=[_app(M1)]).close()
    with Home.open(home, namespaces=[_app(M1, M2)]) as opened:
        assert opened.migrations_current()
        assert opened.db.scalar("SELECT count(*) FROM b") == 0


def _unknown(cfg: Config) -> list[Namespace]:
    Home.open(cfg, namespaces=[_app(M1, M2, M3)]).close()
    return [_app(M1, M2)]


def _edited(cfg: Config) -> list[Namespace]:
    Home.open(cfg, namespaces=[_app(M1, M2)]).close()
    return [_app(M1_EDITED, M2)]


def _gap(cfg: Config) -> list[Namespace]:
    Home.open(cfg, namespaces=[_app(M1, M2, M3)]).close()
    _sql(cfg, "DELETE FROM schema_migrations WHERE namespace = 'app' AND id = '0002_b'")
    return [_app(M1, M2, M3)]


def _out_of_order(cfg: Config) -> list[Namespace]:
    Home.open(cfg, namespaces=[_app(M1, M3)]).close()
    return [_app(M1, M2, M3)]


def _core_edited(cfg: Config) -> list[Namespace]:
    _sql(cfg, "UPDATE schema_migrations SET checksum = 'x' WHERE namespace = 'core'")
    return []


def _core_unknown(cfg: Config) -> list[Namespace]:
    _sql(
        cfg,
        "INSERT INTO schema_migrations (namespace, id, checksum, applied_at, duration_ms, "
        "bastion_version) VALUES ('supervisor', '0099_future', 'x', 0, 0, '9.9')",
    )
    return []


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (_unknown, MigrationUnknown),
        (_edited, MigrationChecksumMismatch),
        (_gap, MigrationGap),
        (_out_of_order, MigrationOutOfOrder),
        (_core_edited, MigrationChecksumMismatch),
        (_core_unknown, MigrationUnknown),
    ],
)
def test_a_bad_history_is_refused_at_the_open_as_the_engine_refuses_it(
    home: Config,
    make: Callable[[Config], list[Namespace]],
    refusal: type[MigrationError],
) -> None:
    Home.init(home).close()
    namespaces = make(home)
    with Home.open(home, migrate=False, namespaces=namespaces) as opened:
        assert not opened.migrations_current()
        (problem,) = [s for s in opened.status()["migrations"] if s["problem"] is not None]
    with pytest.raises(refusal) as err:
        Home.open(home, namespaces=namespaces)
    assert err.value.code == problem["problem"]["code"]
    assert err.value.message == problem["problem"]["message"]


def test_numbers_shared_in_a_package_are_left_to_the_engine(
    home: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files of one package with one number: the engine's declaration refuses them, so
    the look never says such a history is current, even one that has both ids."""
    package = tmp_path / "pkgs" / "twins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "0001_a.sql").write_text("CREATE TABLE a (id INTEGER PRIMARY KEY);\n")
    (package / "0001_b.sql").write_text("CREATE TABLE b (id INTEGER PRIMARY KEY);\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    declared = package_history("twins")
    Home.init(home).close()
    with Home.open(home) as opened:
        rows = [(id, checksum) for id, checksum in declared.items()]

        def record(tx: WriteTx) -> None:
            for row in rows:
                tx.execute(
                    "INSERT INTO schema_migrations (namespace, id, checksum, applied_at, "
                    "duration_ms, bastion_version) VALUES ('twins', ?, ?, 0, 0, '0')",
                    row,
                )

        opened.db.write(record)
        assert not history_is_current(opened.db, [("twins", declared)])
    with pytest.raises(ValueError, match="share the number 0001"):
        Namespace.from_package("twins", "twins")


def test_an_unknown_directive_is_refused_as_the_declaration_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkgs" / "directed"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "0001_a.sql").write_text("-- bastion: no-such-thing\nSELECT 1;\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    with pytest.raises(ValueError, match="unknown directive") as declaring:
        Namespace.from_package("directed", "directed")
    with pytest.raises(ValueError, match="unknown directive") as looking:
        package_history("directed")
    assert str(looking.value) == str(declaring.value)
