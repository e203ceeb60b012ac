"""Spec example 3: a pre-bound socket. Run it with `myapp` importable (cwd examples/)."""

import socket

from appserver import Config, Server

# Create and bind socket manually
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 8000))

# Pass socket to server
config = Config(app="myapp:app")
server = Server(config)
server.run(sockets=[sock])
