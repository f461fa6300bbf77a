"""The seed apps of ../shared/seeds rebuilt on bastion's public API, one package each."""
