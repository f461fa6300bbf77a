"""PostgreSQL URLs: recognised, parsed by libpq's own parser, and shown without the password.

``Database.open`` takes a path or a URL; :func:`is_postgres_url` tells them apart (a SQLite
file is never named ``postgresql://...``). The URL is parsed by libpq (through
``psycopg.conninfo``), so every form libpq accepts works: ``postgresql://user:pw@host:5432/db``,
a Unix socket directory as ``postgresql://user@/db?host=/run/postgresql``, ``sslmode`` and the
other connection parameters. What bastion prints, logs and puts in errors is
:attr:`PgUrl.display`: the URL without its password, which never leaves this module's object
except to the driver.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from bastion.errors import StoreOpenError

__all__ = ["SCHEMES", "PgUrl", "is_postgres_url", "parse_url"]

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: object) -> bool:
    """Whether ``target`` (a path, a URL, anything) names a PostgreSQL database."""
    return isinstance(target, str) and target.lower().startswith(SCHEMES)


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class PgUrl:
    """A parsed PostgreSQL URL. ``repr``/``str`` and :attr:`display` never show the password."""

    #: libpq's connection parameters (the password among them, if the URL had one).
    params: dict[str, str] = dataclasses.field(compare=False)
    #: ``postgresql://user@host:port/dbname``: what messages name.
    display: str

    @property
    def dbname(self) -> str:
        return self.params.get("dbname") or self.params.get("user") or ""

    def __repr__(self) -> str:
        return f"PgUrl({self.display!r})"

    def __str__(self) -> str:
        return self.display


def _password_of(url: str) -> str | None:
    try:
        parsed = urllib.parse.urlsplit(url)
        password = parsed.password
    except ValueError:
        password = None
    query = urllib.parse.parse_qs(url.partition("?")[2]).get("password")
    return password or (query[0] if query else None)


def _scrub(text: str, url: str) -> str:
    """``text`` with the URL's password (raw and percent-decoded) replaced."""
    secret = _password_of(url)
    for form in {secret, urllib.parse.quote(secret or "", safe="")} if secret else ():
        if form:
            text = text.replace(form, "***")
    return text


def parse_url(url: str) -> PgUrl:
    """Parse ``url`` with libpq's parser; a malformed URL is ``StoreOpenError`` naming what is
    wrong (never the password)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        raw = conninfo_to_dict(url)
    except ProgrammingError as err:
        raise StoreOpenError(
            f"not a valid PostgreSQL URL: {_scrub(str(err), url)}",
            hint="Write it as postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME "
            "(a Unix socket: postgresql://USER@/DBNAME?host=/socket/dir).",
        ) from None
    params = {k: str(v) for k, v in raw.items() if v is not None}
    user = params.get("user", "")
    host = params.get("host", "")
    port = params.get("port", "")
    where = host if not host.startswith("/") else ""
    shown = f"postgresql://{urllib.parse.quote(user) + '@' if user else ''}{where}"
    if port and where:
        shown += f":{port}"
    shown += f"/{params.get('dbname', '')}"
    if host.startswith("/"):
        shown += f"?host={host}" + (f"&port={port}" if port else "")
    return PgUrl(params, shown)
