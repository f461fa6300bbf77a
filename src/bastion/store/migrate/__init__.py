"""Implementation of the migration engine; the public API is :mod:`bastion.store.migrations`.

``_common`` (id rules, statement splitting), ``declare`` (``Migration``, ``Namespace``,
orphan policies), ``history`` (``schema_migrations`` and the history check), ``helpers``
(orphan normalization, the 12-step table rebuild), ``lock`` (the cross-process migration
lock and its holder's note), ``undo`` (restoring a failed step's backup, only over the run's
own work; a step a dead holder left half-done), ``runner`` (``Migrator``).
"""
