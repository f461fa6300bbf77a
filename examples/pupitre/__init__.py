"""pupitre: LePupitre's hardened desktop SQL backend (seed 004) rebuilt on bastion.

A global database lists workspace profiles; each profile has its own database. Both are opened
through bastion's store (posture verified at open), migrated by bastion's engine (namespaces
``pupitre_global`` and ``pupitre``), checked and recovered with bastion's backup/recovery
tools. SQL lives in each domain's ``queries.py``, typed access in its ``repo.py``, and
``app.py`` orchestrates without SQL. See README.md.
"""
