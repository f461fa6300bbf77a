"""API keys for the REST API: stored as SHA-256 hashes, shown in full once."""
