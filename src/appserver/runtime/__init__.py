"""Everything that touches the event loop: protocols, timers, sockets, logging, app loading."""
