"""SQL migrations of the ``core`` namespace (package data: ``NNNN_name.sql``)."""
