"""bastion's sidecar supervisor: specs, spawn, health, restart policy and breaker, log capture.

``Supervisor`` is the entry point; ``ServiceSpec`` (``spec.py``) describes a service;
``SecretSource`` is the protocol through which ``app.py`` lends it the vault. The supervisor
never imports ``bastion.vault``.

The names below load on first use (PEP 562): ``bastion.supervisor.migrations`` is imported
on every home open (its namespace is part of ``bastion.db``) and must not pull in the
supervisor itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._lazy import lazy_exports

if TYPE_CHECKING:
    from bastion.supervisor.secret_follow import SecretSource
    from bastion.supervisor.service import ServiceStatus
    from bastion.supervisor.spec import (
        ServiceSpec,
        load_spec,
        load_specs,
        parse_spec,
        validate_dir,
    )
    from bastion.supervisor.states import BreakerState, ServiceState
    from bastion.supervisor.supervisor import Supervisor

__all__ = [
    "BreakerState",
    "SecretSource",
    "ServiceSpec",
    "ServiceState",
    "ServiceStatus",
    "Supervisor",
    "load_spec",
    "load_specs",
    "parse_spec",
    "validate_dir",
]

_HOME = {
    "BreakerState": "bastion.supervisor.states",
    "ServiceState": "bastion.supervisor.states",
    "SecretSource": "bastion.supervisor.secret_follow",
    "ServiceStatus": "bastion.supervisor.service",
    "Supervisor": "bastion.supervisor.supervisor",
    "ServiceSpec": "bastion.supervisor.spec",
    "load_spec": "bastion.supervisor.spec",
    "load_specs": "bastion.supervisor.spec",
    "parse_spec": "bastion.supervisor.spec",
    "validate_dir": "bastion.supervisor.spec",
}


__getattr__, __dir__ = lazy_exports(globals(), _HOME)
