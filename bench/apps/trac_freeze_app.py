"""trac_app.py with the two lines of `gc.freeze()` a tuned deployment adds to its trac.wsgi:
once after the import and once after the first request (when Trac has imported and compiled
what it does lazily). Frozen objects are never scanned again by the cyclic collector, so it
neither spends time on them nor writes to (and so copies) their pages. Paddock's worker does
the same by default (`gc_freeze`); these rows of the benchmark show each peer with it, so
that what is left between Paddock and a peer is the server's own share."""

import gc
import threading

from trac_app import application as trac_application

gc.freeze()
_first = threading.Lock()
_frozen = False


def application(environ, start_response):
    global _frozen
    result = trac_application(environ, start_response)
    if not _frozen:
        with _first:
            if not _frozen:
                gc.freeze()
                _frozen = True
    return result
