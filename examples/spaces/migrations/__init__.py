"""SQL migrations of the ``spaces`` namespace (package data read by ``Namespace.from_package``)."""
