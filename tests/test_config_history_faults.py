"""``bastion.config_history.rollback`` on a full disk (a tmpfs the test mounts, filled to a
few blocks of the end): the rollback either happens whole (file written, version recorded)
or not at all -- in particular when the file was written and the COMMIT that records it then
failed for want of room."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion import config_history
from bastion.app import Home
from bastion.config import load_config
from bastion.errors import BastionError
from tests.fsfaults import mounted_tmpfs, needs_root

OLD = 'argv = ["/bin/sleep", "1"]\n'
NEW = 'argv = ["/bin/sleep", "2"]\n' + "#" * 3000 + "\n"


@pytest.mark.root
def test_a_rollback_on_a_full_disk_happens_whole_or_not_at_all(tmp_path: Path) -> None:
    needs_root()
    outcomes = []
    with mounted_tmpfs(tmp_path / "mnt", size="8m") as mount:
        cfg = load_config(mount.path / "home", env={})
        Home.init(cfg).close()
        spec = cfg.services_dir / "w.toml"
        spec.write_text(OLD)
        with Home.open(cfg) as home:
            (first,) = config_history.sync(home)
        # Room left after the fill, in blocks: from none (the file cannot be written) up to
        # enough for all of it; in between, the file fits and the COMMIT does not.
        for blocks in range(5):
            spec.write_text(NEW)
            with Home.open(cfg) as home:
                config_history.sync(home)
                before = config_history.history(home, limit=1000).items
                mount.fill(leave=blocks * 4096)
                try:
                    config_history.rollback(home, first.id)
                except BastionError as err:
                    outcome = f"{type(err).__name__}: {err.message}"
                else:
                    outcome = "done"
                mount.unfill()
                after = config_history.history(home, limit=1000).items
            text = spec.read_text()
            if outcome == "done":
                assert text == OLD
                assert [(v.action, v.rollback_of) for v in after[:1]] == [("rollback", first.id)]
                assert after[1:] == before
            else:  # refused: the file and the history as they were
                assert text == NEW, f"{blocks} blocks left: {outcome}, yet the file was written"
                assert after == before
            assert sorted(p.name for p in spec.parent.iterdir()) == ["w.toml"]
            outcomes.append(outcome)
    assert any("while committing" in o for o in outcomes), outcomes  # the case that matters
    assert outcomes[-1] == "done"
