"""The isolated round trip's floor: a worker that echoes raw bytes back, on the same kind of socketpair.

No framing, no decoding, no plugin, no error handling: one request and one
reply cost in transport alone (a write and a read each way, two context
switches). A real worker's ``greet()`` round trip is measured against it.
"""

import socket
import sys

sock = socket.socket(fileno=int(sys.argv[1]))
while data := sock.recv(65536):
    sock.sendall(data)
