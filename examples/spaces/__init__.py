"""Seed 002, the spaces app, rebuilt on bastion: per-(space, key) secrets instead of a bundle.

* :mod:`examples.spaces.legacy` -- version 1 (bundled ``SpaceSetup.secrets``), bug included;
* :mod:`examples.spaces.secrets` -- version 2: one vault record per (space, key);
* :mod:`examples.spaces.migrate` -- the lossless, resumable move from 1 to 2;
* :mod:`examples.spaces.schema` -- the app's own migrations namespace ``spaces``;
* :mod:`examples.spaces.app` -- start-up: open, upgrade, finish interrupted deletes; spaces
  with tombstones and a merge for a sync layer;
* :mod:`examples.spaces.bench` -- ``getAllSecrets`` of 20 keys against the version-1 bundle.
"""
