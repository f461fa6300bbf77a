"""Seed 001, TonnyTray (a voice tray app), rebuilt on bastion.

* :mod:`~examples.voice_tray.secrets` -- keychain secrets with the seed's validation and its
  configuration status flags;
* :mod:`~examples.voice_tray.config` -- auto-migration of the plaintext ``config.json`` secrets;
* :mod:`~examples.voice_tray.database` -- the seed's ``AppDatabase`` (settings, logs, profiles,
  transcriptions, activity; statistics, retention, vacuum, integrity) on bastion's store;
* :mod:`~examples.voice_tray.settings` -- the settings round trip (secrets to the vault, the
  rest to the settings table);
* :mod:`~examples.voice_tray.speech_server` -- the sidecar (a small HTTP speech server);
* :mod:`~examples.voice_tray.autotype_client` -- the auto-type client, a second sidecar;
* :mod:`~examples.voice_tray.service` -- their service specs with the seed's exact policy;
* :mod:`~examples.voice_tray.app` -- start-up: open, migrate, supervise, schedule upkeep.
"""
