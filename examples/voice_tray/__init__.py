"""Seed 001, TonnyTray (a voice tray app), rebuilt on bastion.

* :mod:`~examples.voice_tray.secrets` -- keychain secrets with the seed's validation and its
  configuration status flags;
* :mod:`~examples.voice_tray.config` -- auto-migration of the plaintext ``config.json`` secrets;
* :mod:`~examples.voice_tray.database` -- the seed's ``AppDatabase`` (settings, logs, profiles,
  transcriptions, activity; statistics, retention, vacuum, integrity) on bastion's store;
* :mod:`~examples.voice_tray.speech_server` -- the sidecar (a small HTTP speech server);
* :mod:`~examples.voice_tray.service` -- its service spec with the seed's exact policy;
* :mod:`~examples.voice_tray.app` -- start-up: open, migrate, supervise.
"""
