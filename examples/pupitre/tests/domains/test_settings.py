"""``profile_settings`` (profile database) through ``settings.repo``: plain preferences,
replaced in place, and the boundary that keeps credentials out of the table."""

from __future__ import annotations

import pytest

from bastion.errors import NotFound
from bastion.store import Database
from examples.pupitre.settings import repo


def test_set_get_replace_list_delete(profile_db: Database) -> None:
    assert repo.get(profile_db, "ui.theme") is None
    profile_db.write(lambda tx: repo.set_value(tx, "ui.theme", "dark"))
    profile_db.write(lambda tx: repo.set_value(tx, "audio.rate", "48000"))
    profile_db.write(lambda tx: repo.set_value(tx, "ui.theme", "light"))  # replaced, one row
    assert repo.get(profile_db, "ui.theme") == "light"
    assert repo.list_all(profile_db) == {"audio.rate": "48000", "ui.theme": "light"}
    profile_db.write(lambda tx: repo.delete(tx, "ui.theme"))
    assert repo.list_all(profile_db) == {"audio.rate": "48000"}
    with pytest.raises(NotFound):
        profile_db.write(lambda tx: repo.delete(tx, "ui.theme"))


def test_a_credential_key_holds_only_a_vault_reference(profile_db: Database) -> None:
    assert repo.is_secret_key("analysis.api_key")
    assert repo.is_secret_key("sync.TOKEN")
    assert not repo.is_secret_key("ui.theme")
    with pytest.raises(repo.SecretInSettings) as err:
        profile_db.write(lambda tx: repo.set_value(tx, "analysis.api_key", "plain-value-123"))
    assert "plain-value-123" not in str(err.value)
    profile_db.write(lambda tx: repo.set_value(tx, "analysis.api_key", "secret:pupitre/key"))
    assert repo.get(profile_db, "analysis.api_key") == "secret:pupitre/key"


def test_a_credential_shaped_value_is_refused_under_any_key(profile_db: Database) -> None:
    with pytest.raises(repo.SecretInSettings) as err:
        profile_db.write(lambda tx: repo.set_value(tx, "notes", "sk-abcdefghijklmnop"))
    assert "sk-abcdefghijklmnop" not in str(err.value)
    assert repo.list_all(profile_db) == {}
