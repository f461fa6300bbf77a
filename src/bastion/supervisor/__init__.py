"""bastion's sidecar supervisor: specs, spawn, health, restart policy and breaker, log capture.

``Supervisor`` is the entry point; ``ServiceSpec`` (``spec.py``) describes a service;
``SecretSource`` is the protocol through which ``app.py`` lends it the vault. The supervisor
never imports ``bastion.vault``.
"""

from bastion.supervisor.spec import ServiceSpec, load_spec, load_specs, parse_spec, validate_dir
from bastion.supervisor.states import BreakerState, ServiceState
from bastion.supervisor.supervisor import SecretSource, ServiceStatus, Supervisor

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
