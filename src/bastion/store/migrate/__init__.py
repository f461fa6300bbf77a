"""Implementation of the migration engine; the public API is :mod:`bastion.store.migrations`.

``_common`` (id rules, statement splitting), ``declare`` (``Migration``, ``Namespace``,
orphan policies), ``history`` (``schema_migrations`` and the history check), ``helpers``
(orphan normalization, the 12-step table rebuild), ``runner`` (``Migrator``).
"""
