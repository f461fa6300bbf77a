"""bastion._text: the files people write are read as UTF-8 (a UTF-8 byte-order mark
dropped); any other encoding, a folder, or a file that cannot be read is an error saying which,
where, and how to fix it. Property tests over every text and every byte string."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bastion._text import decode_utf8, read_text
from bastion.errors import ConfigError

WHAT = "bastion.toml"
BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


@given(st.text())
def test_any_utf8_text_reads_back_as_written_with_or_without_a_bom(text: str) -> None:
    path = Path("/x/bastion.toml")
    assert decode_utf8(text.encode("utf-8"), path, ConfigError, WHAT) == text
    assert decode_utf8(codecs.BOM_UTF8 + text.encode("utf-8"), path, ConfigError, WHAT) == text


@given(st.binary())
def test_bytes_that_are_not_utf8_name_the_first_bad_byte_by_line_and_column(raw: bytes) -> None:
    path = Path("/x/bastion.toml")
    body = raw.removeprefix(codecs.BOM_UTF8)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        if any(raw.startswith(b) for b in BOMS):
            return  # named by its byte-order mark (below)
        with pytest.raises(ConfigError) as refused:
            decode_utf8(raw, path, ConfigError, WHAT)
        start = err.start + (len(raw) - len(body))
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        assert f"byte 0x{raw[start]:02x} at line {line}, column {column}" in refused.value.message
        assert "iconv -f LATIN1 -t UTF-8" in refused.value.hint
    else:
        assert decode_utf8(raw, path, ConfigError, WHAT) == body.decode("utf-8")


@pytest.mark.parametrize(
    ("encoding", "name"),
    [
        ("utf-16-le", "UTF-16"),
        ("utf-16-be", "UTF-16"),
        ("utf-32-le", "UTF-32"),
        ("utf-32-be", "UTF-32"),
    ],
)
@given(text=st.text(min_size=1))
def test_a_utf16_or_utf32_file_is_named_by_its_byte_order_mark(
    encoding: str, name: str, text: str
) -> None:
    # FF FE then a UTF-16-LE NUL (00 00) is FF FE 00 00, UTF-32-LE's mark, and read so (as
    # every byte-order-mark sniffer reads it; Hypothesis found it).
    assume(not (encoding == "utf-16-le" and text.startswith("\x00")))
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }[encoding]
    with pytest.raises(ConfigError) as refused:
        decode_utf8(bom + text.encode(encoding, "surrogatepass"), Path("/x/a"), ConfigError, "a")
    assert f"is {name} text (it starts with a {name} byte-order mark)" in refused.value.message
    assert f"iconv -f {name} -t UTF-8 /x/a > /x/a.utf8" in refused.value.hint


def test_a_missing_file_is_none_only_when_allowed(tmp_path: Path) -> None:
    assert read_text(tmp_path / "bastion.toml", ConfigError, WHAT, missing_ok=True) is None
    with pytest.raises(ConfigError, match="does not exist"):
        read_text(tmp_path / "bastion.toml", ConfigError, WHAT)


def test_a_directory_or_a_file_used_as_a_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").mkdir()
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        read_text(tmp_path / "bastion.toml", ConfigError, WHAT, missing_ok=True)
    (tmp_path / "home").write_text("a file")
    with pytest.raises(ConfigError, match="a part of its path is a file, not a folder") as err:
        read_text(tmp_path / "home" / "bastion.toml", ConfigError, WHAT, missing_ok=True)
    assert "--home or BASTION_HOME" in err.value.hint
