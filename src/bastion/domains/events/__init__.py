"""Built-in ``events`` table: typed state-change events (see :mod:`.repo`)."""

from bastion.domains.events.repo import Event, EventsRepo, emit_tx, event_sink

__all__ = ["Event", "EventsRepo", "emit_tx", "event_sink"]
