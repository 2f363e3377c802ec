#!/usr/bin/env python3
"""The file-level import graph of each crate's src/, and its circles (strongly connected
components). A module and its children are one unit: a child may use its parent's items (and
the crate root's). Every other `crate::...`, `super::...`, `self::...` or `child::...`
reference between files is an edge. Exits 1 if any crate has a circle; scripts/test.sh runs it
on every crate and docs/architecture.md states the rule.

Usage: scripts/modgraph.py SRC_DIR... [--edges]"""
import os
import re
import sys
from collections import defaultdict

PATH_REF = re.compile(r'\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)')
USE_GROUP = re.compile(r'\b(crate|super|self)::\{([^;]*?)\}', re.S)
CHILD_DECL = re.compile(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', re.M)
TEST_MOD = re.compile(r'^#\[cfg\(test\)\]\s*\nmod tests\s*\{', re.M)


def modules(src):
    """{module path tuple: file}, the crate root being ()."""
    files = {}
    for root, _, names in os.walk(src):
        for f in names:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(root, f)
            parts = os.path.relpath(p, src)[:-3].split(os.sep)
            if parts[-1] == 'mod':
                parts = parts[:-1]
            if parts in (['lib'], ['main']):
                parts = []
            files[tuple(parts)] = p
    return files


def is_test(mod):
    return bool(mod) and (mod[-1] == 'tests' or mod[-1].startswith('tests_'))


def edges_of(files):
    def resolve(path):
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in files:
                return tuple(path[:n])
        return None

    edges = defaultdict(set)
    for mod, p in files.items():
        if is_test(mod):
            continue
        text = open(p, encoding='utf-8').read()
        m = TEST_MOD.search(text)
        if m:
            text = text[:m.start()]
        text = re.sub(r'//[^\n]*', '', text)
        base = list(mod)
        refs = []
        for g in USE_GROUP.finditer(text):
            for item in g.group(2).split(','):
                item = re.sub(r'[{}\s]', '', item.strip().split(' as ')[0])
                if item:
                    refs.append((g.group(1), item.split('::')))
        for g in PATH_REF.finditer(text):
            refs.append((g.group(1), g.group(2).strip(':').split('::')))
        for child in CHILD_DECL.findall(text):
            if tuple(base + [child]) in files and re.search(r'(?<!::)\b' + child + r'::', text):
                edges[mod].add(tuple(base + [child]))
        for head, rest in refs:
            if head == 'crate':
                target = rest
            elif head == 'self':
                target = base + rest
            else:
                b, r = base[:-1], rest[:]
                while r and r[0] == 'super':
                    b, r = b[:-1], r[1:]
                target = b + r
            t = resolve(target)
            # A reference to the module itself or to one of its ancestors is not an edge.
            if t is not None and t != mod and mod[:len(t)] != t:
                edges[mod].add(t)
    return edges


def circles(files, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in files:
        if v not in index and not is_test(v):
            strong(v)
    return out


def name(m):
    return '/'.join(m) or 'lib'


def main():
    dirs = [a for a in sys.argv[1:] if not a.startswith('--')]
    if not dirs:
        sys.exit(__doc__)
    bad = 0
    for src in dirs:
        files = modules(src.rstrip('/'))
        edges = edges_of(files)
        found = circles(files, edges)
        for c in sorted(found, key=len, reverse=True):
            print(f"{src}: circle of {len(c)}: " + ' '.join(sorted(name(m) for m in c)))
        if '--edges' in sys.argv:
            for m in sorted(edges):
                print(f"{src}: {name(m)} -> " + ' '.join(sorted(name(t) for t in edges[m])))
        print(f"{src}: {len(files)} files, {len(found)} import circle(s)")
        bad += len(found)
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
