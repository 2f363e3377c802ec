"""WSGI test apps for paddock-worker's integration tests; `dispatch` routes on PATH_INFO."""
import json
import sys
import time
from wsgiref.validate import validator


def _text(start_response, body, status='200 OK'):
    start_response(status, [('Content-Type', 'text/plain'),
                            ('Content-Length', str(len(body)))])
    return [body]


def simple(environ, start_response):
    return _text(start_response, b'hello ' + environ['PATH_INFO'].encode('latin-1'))


def environ_json(environ, start_response):
    env = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}
    env['wsgi.version'] = list(environ['wsgi.version'])
    env['sys.argv'] = sys.argv
    env['stdout_is_stderr'] = sys.stdout is sys.stderr
    body = json.dumps(env).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]


def _validated_inner(environ, start_response):
    inp = environ['wsgi.input']
    length = int(environ.get('CONTENT_LENGTH') or 0)
    first = inp.readline(length)
    rest = inp.read(length - len(first))
    environ['wsgi.errors'].write('validated app ran\n')
    write = start_response('200 OK', [('Content-Type', 'text/plain'), ('X-Lines', '1')])
    write(b'got:')
    return iter([first, rest])


validated = validator(_validated_inner)


def echo(environ, start_response):
    data = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                              ('Content-Length', str(len(data)))])
    return [data]


def lines(environ, start_response):
    inp = environ['wsgi.input']
    out = {'first': inp.readline().decode(), 'second': inp.readline(4).decode()}
    out['rest'] = [line.decode() for line in inp]
    out['after'] = inp.read().decode()
    body = json.dumps(out).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]


def stream(environ, start_response):
    mib = int(environ.get('QUERY_STRING') or '20')
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    block = bytes(range(256)) * 4096
    for _ in range(mib):
        yield block


def writer(environ, start_response):
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'written ')
    write(b'')
    return [b'', b'returned']


class _Closing:
    def __init__(self, path, fail):
        self.path, self.fail = path, fail

    def __iter__(self):
        yield b'part1 '
        if self.fail:
            raise ValueError('failing mid-body')
        yield b'part2'

    def close(self):
        with open(self.path, 'a') as f:
            f.write('closed\n')


def closing(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return _Closing(environ['test.close_file'], environ.get('QUERY_STRING') == 'fail')


def exc_before(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    try:
        raise ValueError('recovered')
    except ValueError:
        start_response('500 Internal Server Error', [('Content-Type', 'text/plain')],
                       sys.exc_info())
    return [b'error page']


def exc_after(environ, start_response):
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'partial')
    try:
        raise ValueError('too late')
    except ValueError:
        start_response('500 Internal Server Error', [('Content-Type', 'text/plain')],
                       sys.exc_info())
    return [b'never sent']


def twice(environ, start_response):
    start_response('200 OK', [])
    start_response('200 OK', [])
    return [b'x']


def raise_early(environ, start_response):
    raise RuntimeError('early failure')


def not_iterable(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return 42


def bad_header(environ, start_response):
    start_response('200 OK', [('X-Bad', 'a\nb')])
    return [b'x']


def hop_header(environ, start_response):
    start_response('200 OK', [('Connection', 'close')])
    return [b'x']


def no_start(environ, start_response):
    return [b'x']


def yields_str(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return ['text']


def ignore_body(environ, start_response):
    return _text(start_response, b'ignored')


def half_read(environ, start_response):
    environ['wsgi.input'].read(10)
    return _text(start_response, b'half')


_kept = []


def keep_input(environ, start_response):
    _kept.append(environ['wsgi.input'])
    return _text(start_response, b'kept')


def read_kept(environ, start_response):
    data = _kept[-1].read() if _kept else b'none'
    return _text(start_response, b'stale:' + data)


def sleep(environ, start_response):
    time.sleep(float(environ.get('QUERY_STRING') or '1'))
    return _text(start_response, b'slept')


def stuck_here(seconds):
    time.sleep(seconds)


def stuck(environ, start_response):
    stuck_here(float(environ.get('QUERY_STRING') or '30'))
    return _text(start_response, b'unstuck')


def spin_here(seconds):
    # Holds the GIL except at the interpreter's switch interval: a stack dump must still work.
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def spin(environ, start_response):
    spin_here(float(environ.get('QUERY_STRING') or '30'))
    return _text(start_response, b'spun')


def file_wrapper(environ, start_response):
    import io
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return environ['wsgi.file_wrapper'](io.BytesIO(b'0123456789' * 1000), 333)


def panic_str_status(environ, start_response):
    start_response(b'200 OK', [])
    return [b'x']


def short_length(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '10')])
    return [b'12345']


def long_length(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '3')])
    return [b'12', b'345', b'678']


def gc_state(environ, start_response):
    """Objects in the collector's permanent generation, and whether a cycle made now is
    still collected: `FROZEN COLLECTED`."""
    import gc
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    return _text(start_response, b'%d %s' % (gc.get_freeze_count(), str(ref() is None).encode()))


APPS = {name: obj for name, obj in globals().items()
        if callable(obj) and not name.startswith('_') and name not in ('dispatch', 'validator')}


def dispatch(environ, start_response):
    name = environ['PATH_INFO'].split('/')[1]
    return APPS[name](environ, start_response)
