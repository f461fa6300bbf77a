"""bots: Boternity's SQLite storage layer (seed 003) rebuilt on bastion.

One ``Database`` per data directory gives the seed's split pools (one writer thread with group
commit, a pool of read-only connections, WAL everywhere, verified at open); migrations run on
open (namespace ``bots``); typed repositories for bots, soul versions and API keys; secrets in
bastion's vault with the encrypted-file backend, scoped ``global`` or ``bot:<id>``; a small
REST facade (``api.py``) where ``Conflict`` is 409 and ``NotFound`` is 404. See README.md.
"""
