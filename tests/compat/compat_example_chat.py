"""A small line-based chat server: a Python 3.11 asynchat/asyncore program.

Written against Python 3.11's ``asynchat``/``asyncore``; the only change for 3.12+ is the
import line below (``test_compat_programs.py`` runs it both ways).  A client is asked for a
name, then every line it sends goes to every other named client; ``/quit`` says goodbye and
closes once the goodbye is sent.

    python compat_example_chat.py [PORT]    # prints "listening on HOST:PORT", serves forever
"""

import socket
import sys

from sanschat.compat import asynchat, asyncore  # was: import asynchat, asyncore


class ChatHandler(asynchat.async_chat):
    def __init__(self, sock, server):
        asynchat.async_chat.__init__(self, sock)
        self.server = server
        self.set_terminator(b"\n")
        self.buffer = []
        self.name = None
        self.push(b"name?\n")

    def collect_incoming_data(self, data):
        self.buffer.append(data)

    def found_terminator(self):
        line = b"".join(self.buffer).rstrip(b"\r")
        self.buffer = []
        if self.name is None:
            self.name = line
            self.push(b"welcome " + line + b"\n")
            self.server.broadcast(b"* " + line + b" joined\n", self)
        elif line == b"/quit":
            self.push(b"bye\n")
            self.close_when_done()
        else:
            self.server.broadcast(self.name + b": " + line + b"\n", self)

    def handle_close(self):
        if self in self.server.clients:
            self.server.clients.remove(self)
            if self.name:
                self.server.broadcast(b"* " + self.name + b" left\n", self)
        self.close()


class ChatServer(asyncore.dispatcher):
    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(5)
        self.clients = []

    def handle_accepted(self, sock, addr):
        self.clients.append(ChatHandler(sock, self))

    def broadcast(self, line, sender):
        for client in self.clients:
            if client is not sender and client.name:
                client.push(line)


if __name__ == "__main__":
    server = ChatServer("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8023)
    host, port = server.socket.getsockname()
    print(f"listening on {host}:{port}", flush=True)
    asyncore.loop()
