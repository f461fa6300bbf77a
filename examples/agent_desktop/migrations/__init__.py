"""SQL migrations of the ``agent_desktop`` namespace (package data read by ``Namespace.from_package``)."""
