#!/usr/bin/env python3
"""Seed fuzz/corpus/<target>/ from the unit tests' own inputs (string and byte-string literals
of the test files named below) and the example configs; protocol seeds are written by the
ignored test `write_protocol_seeds` (scripts/fuzz.sh --seed runs both). Idempotent: files are
named by content hash."""
import hashlib, pathlib, re, sys

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"

LIT = re.compile(rb'b?r(#*)"(.*?)"\1|b?"((?:[^"\\]|\\.)*)"', re.S)

def unescape(s: bytes) -> bytes:
    out, i = bytearray(), 0
    simple = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("0"): b"\0",
              ord("\\"): b"\\", ord('"'): b'"', ord("'"): b"'"}
    while i < len(s):
        c = s[i]
        if c != 0x5C:
            out.append(c); i += 1; continue
        n = s[i + 1] if i + 1 < len(s) else None
        if n in simple:
            out += simple[n]; i += 2
        elif n == ord("x"):
            out.append(int(s[i + 2:i + 4], 16)); i += 4
        elif n == ord("u"):
            j = s.index(b"}", i)
            out += chr(int(s[i + 3:j], 16)).encode(); i = j + 1
        elif n == ord("\n"):  # line continuation: skip the newline and leading spaces
            i += 2
            while i < len(s) and s[i] in b" \t": i += 1
        else:
            out.append(c); i += 1
    return bytes(out)

def literals(path):
    text = (root / path).read_bytes()
    for m in LIT.finditer(text):
        yield m.group(2) if m.group(2) is not None else unescape(m.group(3))

def put(target, data: bytes):
    if not data or len(data) > 64 * 1024:
        return
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)

for lit in literals("router/src/eightbit/tests.rs"):
    if b"HTTP/" in lit:
        for sel in (0, 1, 3):
            put("eightbit", bytes([sel]) + lit)
for f in ("router/src/rules/tests_parse.rs", "router/src/rules/tests.rs"):
    for lit in literals(f):
        if b"Rewrite" in lit:
            put("rules", lit + b"\0\0/trac/alpha/wiki?x=1\nHost: a.example")
put("rules", (root / "deploy/examples/per-site-pools.rules").read_bytes() + b"\0\0/alpha/login")
for lit in literals("router/src/path/tests.rs"):
    if lit.startswith(b"/") or lit.startswith(b"http"):
        put("path", lit)
        put("path", lit + b"\0\0/trac/demo-1")
hashes = []
for f in ("router/src/auth/tests.rs", "router/src/auth/htpasswd.rs"):
    for lit in literals(f):
        if lit.startswith((b"$", b"{SHA}")):
            hashes.append(lit)
        if b":" in lit and b"\n" in lit:
            put("htpasswd", lit)
        if lit.lower().startswith(b"basic"):
            put("basic", lit)
for i, h in enumerate(hashes):
    put("htpasswd", b"user%d:" % i + h + b"\n# comment\n\nbad line\n")
for s in (b"Basic YWxpY2U6c2VjcmV0", b"Basic YWxpY2U6c2VjcmV0\nBasic Ym9i", b"basic  w6k6w6k=", b"Digest x"):
    put("basic", s)
for s in (b"127.0.0.1\0\0X-Forwarded-For: 203.0.113.9, 10.0.0.2\nX-Forwarded-Proto: https",
          b"127.0.0.0/8,10.0.0.0/8\0\0Forwarded: for=198.51.100.1;proto=https, for=\"[2001:db8::1]:80\"",
          b"::1\0\0Forwarded: for=unknown\nX-Forwarded-For: garbage"):
    put("forwarded", s)
for p in sorted((root / "deploy/examples").glob("*.toml")):
    put("config", p.read_bytes())
for lit in literals("config/src/tests.rs"):
    if b"=" in lit and b"\n" in lit:
        put("config", lit)
for t in sorted(corpus.iterdir()):
    print(f"{t.name}: {len(list(t.iterdir()))} seeds", file=sys.stderr)
