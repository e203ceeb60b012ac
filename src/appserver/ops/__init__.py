"""What an operator needs from the server itself: health and readiness probes, metrics.

Below the runtime: nothing here touches the loop or a socket. The runtime builds these from a
validated config and calls them; they read the server's state through small protocols.
"""
