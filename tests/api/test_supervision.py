"""The daemon's follow of ``bastion.toml`` (``bastion.api.supervision.follow_config_file``):
a file edited into something invalid (or given a mode that lets another user change it)
while the daemon runs is said in its log, naming the home's file, not only refused at the
next start."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from bastion.api.supervision import follow_config_file
from bastion.app import Home
from bastion.config import load_config
from bastion.domains.confighistory import CONFIG_TARGET, ConfigHistoryRepo

from ..helpers import await_until


def test_an_invalid_edit_of_bastion_toml_is_logged_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = Home.init(load_config(tmp_path / "home", env={}))
    config_file = home.config.home / "bastion.toml"
    config_file.write_text("[retention]\nlogs_days = 7\n")
    history = ConfigHistoryRepo(home.db)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    async def scenario() -> None:
        follow = asyncio.get_running_loop().create_task(follow_config_file(home))
        try:
            await await_until(lambda: history.latest(CONFIG_TARGET), what="the first version")
            config_file.write_text("[retention]\nlogs_days = 'seven'\n")
            await await_until(warnings, timeout=30, what="the warning")
            # Valid text in a file another user could change: the next start refuses it.
            config_file.chmod(0o666)
            config_file.write_text("[retention]\nlogs_days = 8\n")
            await await_until(
                lambda: any("writable by group" in w for w in warnings()),
                timeout=30,
                what="the warning for the mode",
            )
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)

    try:
        with caplog.at_level(logging.WARNING, logger="bastion.daemon"):
            asyncio.run(scenario())
        wrong_type = warnings()[0]
        shared = next(w for w in warnings() if "writable by group" in w)
        assert "bastion.toml is not valid, so it is not recorded" in wrong_type
        assert f"{config_file} [retention] logs_days: 'seven' is not a whole number" in wrong_type
        assert "bastion-config-check-" not in wrong_type  # the temporary copy is never named
        assert f"{config_file} is writable by group or others (mode 666)" in shared
        assert f"chmod 600 {config_file}" in shared
        assert [v.action for v in history.query(target=CONFIG_TARGET).items] == ["created"]
    finally:
        home.close()


@pytest.mark.parametrize(
    ("fix", "versions"),
    [
        ("[retention]\nlogs_days = 8\n", 2),  # a new text: a new version
        # The usual fixes (an undo in the editor, `config rollback` to the version before)
        # put back a text recorded already: no new version, so no config.changed was said,
        # and a dashboard showing the config.invalid showed it until the next new edit.
        ("[retention]\nlogs_days = 7\n", 1),
    ],
)
def test_changes_of_bastion_toml_are_events_the_app_and_the_dashboard_see(
    tmp_path: Path, fix: str, versions: int
) -> None:
    # The log is the daemon's stderr, which the app that spawned it does not read: a file
    # that the next start would refuse was said nowhere it looks.
    home = Home.init(load_config(tmp_path / "home", env={}))
    config_file = home.config.home / "bastion.toml"
    config_file.write_text("[retention]\nlogs_days = 7\n")
    history = ConfigHistoryRepo(home.db)

    def events(kind: str) -> list[Any]:
        return list(home.events.query(kind=kind).items)

    async def scenario() -> None:
        follow = asyncio.get_running_loop().create_task(follow_config_file(home))
        try:
            await await_until(lambda: history.latest(CONFIG_TARGET), what="the first version")
            config_file.write_text("[retention]\nlogs_days = 'seven'\n")
            await await_until(lambda: events("config.invalid"), timeout=30, what="the event")
            config_file.write_text(fix)
            await await_until(lambda: events("config.changed"), timeout=30, what="the fix")
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)

    try:
        asyncio.run(scenario())
        (invalid,) = events("config.invalid")
        assert invalid.subject == "bastion.toml"
        assert invalid.data["error"]["code"] == "config_invalid"
        assert invalid.data["error"]["message"] == (
            f"{config_file} [retention] logs_days: 'seven' is not a whole number"
        )
        assert len(history.query(target=CONFIG_TARGET).items) == versions
        (changed,) = events("config.changed")  # the daemon's first look is no change
        latest = history.latest(CONFIG_TARGET)
        assert latest is not None
        assert changed.data == {"version": latest.id, "applies": "next start"}
    finally:
        home.close()


def test_a_version_the_database_refuses_is_said_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Another process holds bastion.db's write lock past the busy timeout when bastion.toml
    # changes: the daemon's log says why the version was not recorded, in a line (a
    # traceback there is a bug shown to a user), and the next change records it.
    import apsw

    home = Home.init(load_config(tmp_path / "home", env={"BASTION_STORE_BUSY_TIMEOUT_MS": "2000"}))
    config_file = home.config.home / "bastion.toml"
    config_file.write_text("[retention]\nlogs_days = 7\n")
    history = ConfigHistoryRepo(home.db)

    def refused() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "could not record" in r.getMessage()]

    async def scenario() -> None:
        follow = asyncio.get_running_loop().create_task(follow_config_file(home))
        other = apsw.Connection(str(home.config.db_path))
        try:
            await await_until(lambda: history.latest(CONFIG_TARGET), what="the first version")
            other.execute("BEGIN IMMEDIATE")  # another process's long write
            config_file.write_text("[retention]\nlogs_days = 8\n")
            await await_until(refused, timeout=60, what="the refusal")
            other.execute("ROLLBACK")
            config_file.write_text("[retention]\nlogs_days = 9\n")
            await await_until(
                lambda: len(history.query(target=CONFIG_TARGET).items) == 2,
                timeout=30,
                what="the next change recorded",
            )
        finally:
            other.close()
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)

    try:
        with caplog.at_level(logging.WARNING, logger="bastion.daemon"):
            asyncio.run(scenario())
        (record,) = refused()
        assert record.exc_info is None, "a traceback in the daemon's log"
        assert "locked" in record.getMessage()
    finally:
        home.close()
