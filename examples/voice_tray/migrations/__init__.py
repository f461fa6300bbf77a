"""SQL migrations of the ``voice_tray`` namespace (package data read by ``Namespace.from_package``)."""
