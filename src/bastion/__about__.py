"""The one place bastion's versions are defined."""

__version__ = "0.1.0"

#: The HTTP API's own version (semver), separate from the package's: the daemon's handshake
#: line and ``GET /health`` carry it, and a client refuses a daemon of another major.
#: Bump the major for a change that breaks a client (a route, field or code removed or
#: changed in meaning), the minor for an addition, the patch for a fix that changes no shape.
__api_version__ = "1.1.0"
