"""Hello-world WSGI app for the benchmarks: the smallest response a server can be asked for,
so what is measured is the server (HTTP parsing, hand-off to Python, response), not the app."""

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
