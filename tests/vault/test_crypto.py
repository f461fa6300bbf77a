"""The record AAD binds every field that says where a value belongs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bastion.vault.crypto import record_aad

_scopes = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}", fullmatch=True)
_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
_versions = st.integers(min_value=1, max_value=2**40)


@given(a=st.tuples(_scopes, _names, _versions), b=st.tuples(_scopes, _names, _versions))
def test_distinct_places_have_distinct_aad(
    a: tuple[str, str, int], b: tuple[str, str, int]
) -> None:
    # Injective over valid (scope, name, version): a ciphertext can only decrypt where it was
    # written. A field dropped from the AAD, or two fields run together, breaks this.
    assert (record_aad(*a) == record_aad(*b)) == (a == b)


def test_each_field_changes_the_aad() -> None:
    base = record_aad("bot:1", "API_KEY", 1)
    assert record_aad("bot:2", "API_KEY", 1) != base
    assert record_aad("bot:1", "API_KEY2", 1) != base
    assert record_aad("bot:1", "API_KEY", 2) != base
    # Field boundaries: moving a character across the scope/name edge is another place.
    assert record_aad("bot:1A", "PI_KEY", 1) != base
