"""Bad HTTP requests and the status the HTTP example answers each with (shared by the
harness tests and the socket tests of every driver)."""

BAD_REQUESTS = {
    "request-line": (b"NONSENSE\r\n\r\n", b"400"),
    "request-line-spaces": (b"GET  / HTTP/1.0\r\n\r\n", b"400"),
    "request-line-control": (b"GET /\x01 HTTP/1.0\r\n\r\n", b"400"),
    "no-length": (b"POST / HTTP/1.0\r\n\r\n", b"411"),
    "negative-length": (b"POST / HTTP/1.0\r\nContent-Length: -3\r\n\r\n", b"400"),
    "plus-length": (b"POST / HTTP/1.0\r\nContent-Length: +3\r\n\r\nabc", b"400"),
    "unicode-digits": (b"POST / HTTP/1.0\r\nContent-Length: \xd9\xa3\r\n\r\nabc", b"400"),
    "duplicate-length": (
        b"POST / HTTP/1.0\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", b"400"),
    "conflicting-length": (
        b"POST / HTTP/1.0\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", b"400"),
    "list-length": (b"POST / HTTP/1.0\r\nContent-Length: 3, 3\r\n\r\nabc", b"400"),
    "long-number": (b"POST / HTTP/1.0\r\nContent-Length: " + b"0" * 19 + b"3\r\n\r\n", b"400"),
    "transfer-encoding": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"501"),
    "te-and-length": (
        b"POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
    "no-colon": (b"GET / HTTP/1.0\r\nno colon here\r\n\r\n", b"400"),
    "space-before-colon": (b"POST / HTTP/1.0\r\nContent-Length : 3\r\n\r\nabc", b"400"),
    "empty-name": (b"GET / HTTP/1.0\r\n: value\r\n\r\n", b"400"),
    "control-byte": (b"GET / HTTP/1.0\r\nX: a\x00b\r\n\r\n", b"400"),
    "bare-lf": (b"GET / HTTP/1.0\r\nX: a\nY: b\r\n\r\n", b"400"),
    "bare-cr": (b"GET / HTTP/1.0\r\nX: a\rY: b\r\n\r\n", b"400"),
    "too-long": (b"POST / HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n", b"413"),
    "many-headers": (b"GET / HTTP/1.0\r\n" + b"X: y\r\n" * 101 + b"\r\n", b"431"),
    "header-bytes": (b"GET / HTTP/1.0\r\n" + b"X: " + b"y" * 10_000 + b"\r\n" +
                     b"Z: " + b"y" * 10_000 + b"\r\n\r\n", b"431"),
    "long-header-line": (b"GET / HTTP/1.0\r\nX: " + b"y" * 70_000 + b"\r\n\r\n", b"431"),
    "long-request-line": (b"GET /" + b"y" * 70_000 + b" HTTP/1.0\r\n\r\n", b"431"),
}
