"""The isolated round trip's floor: a worker that only echoes, over greeter's very channel.

Same socketpair, same framing, same pickle, same message shapes as a real
worker's greet call; no plugin, no loader, no error handling.
"""

import socket
import sys

from greeter_core.worker.protocol import Channel

channel = Channel(socket.socket(fileno=int(sys.argv[1])), trusted=True)
try:
    while True:
        op, name = channel.recv()
        channel.send(("ok", "Hello " + name))
except EOFError:
    pass
