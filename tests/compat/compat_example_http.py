"""The HTTP request handler of the asynchat documentation, completed: a Python 3.11 program.

Written against Python 3.11's ``asynchat``/``asyncore``; the only change for 3.12+ is the
import line below (``test_compat_programs.py`` runs it both ways).  The handler is the
documentation's: headers up to the blank line, then a POST body by ``Content-Length`` as a
numeric terminator, then ``set_terminator(None)`` because browsers sometimes over-send.

    python compat_example_http.py [PORT]    # prints "listening on HOST:PORT", serves forever
"""

import socket
import sys
from email.parser import BytesHeaderParser
from urllib.parse import parse_qs

from sanschat.compat import asynchat, asyncore  # was: import asynchat, asyncore


def parse(headers, body):
    """Decode a form body (the documentation leaves ``parse`` to the reader)."""
    if headers.get("content-type", "") == "application/x-www-form-urlencoded":
        return parse_qs(body.decode("latin-1"))
    return body


class http_request_handler(asynchat.async_chat):
    def __init__(self, sock, addr, sessions, log):
        asynchat.async_chat.__init__(self, sock=sock)
        self.addr = addr
        self.sessions = sessions
        self.ibuffer = []
        self.obuffer = b""
        self.set_terminator(b"\r\n\r\n")
        self.reading_headers = True
        self.handling = False
        self.cgi_data = None
        self.log = log

    def collect_incoming_data(self, data):
        """Buffer the data"""
        self.ibuffer.append(data)

    def found_terminator(self):
        if self.reading_headers:
            self.reading_headers = False
            self.parse_headers(b"".join(self.ibuffer))
            self.ibuffer = []
            if self.op.upper() == b"POST":
                clen = int(self.headers.get("content-length", "0"))
                if clen > 0:
                    self.set_terminator(clen)
                else:  # a terminator of 0 would mean "collect forever" to asynchat
                    self.found_terminator()
            else:
                self.handling = True
                self.set_terminator(None)
                self.handle_request()
        elif not self.handling:
            self.set_terminator(None)  # browsers sometimes over-send
            self.cgi_data = parse(self.headers, b"".join(self.ibuffer))
            self.handling = True
            self.ibuffer = []
            self.handle_request()

    def parse_headers(self, data):
        request_line, _, rest = data.partition(b"\r\n")
        self.op, self.path, self.version = [*request_line.split(), b"", b""][:3]
        self.headers = BytesHeaderParser().parsebytes(rest)

    def handle_request(self):
        self.log(f"{self.op.decode('latin-1')} {self.path.decode('latin-1')}")
        if self.op.upper() == b"POST":
            data = self.cgi_data
            body = data if isinstance(data, bytes) else repr(sorted(data.items())).encode()
        else:
            body = b"you asked for " + self.path
        self.push(b"HTTP/1.0 200 OK\r\n")
        self.push(b"Content-Type: text/plain\r\n")
        self.push(b"Content-Length: %d\r\n\r\n" % len(body))
        self.push_with_producer(asynchat.simple_producer(body))
        self.close_when_done()


class http_server(asyncore.dispatcher):
    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(5)
        self.sessions = {}
        self.hits = []

    def handle_accepted(self, sock, addr):
        http_request_handler(sock, addr, self.sessions, self.hits.append)


if __name__ == "__main__":
    server = http_server("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
    host, port = server.socket.getsockname()
    print(f"listening on {host}:{port}", flush=True)
    asyncore.loop()
