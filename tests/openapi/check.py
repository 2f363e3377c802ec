"""Check the admin API against docs/openapi.yaml.

Usage: check.py SPEC OBSERVATIONS

SPEC is validated as an OpenAPI 3.1 document. OBSERVATIONS is a JSON list of what the test
saw: {"method", "path", "status", "body"} (body parsed JSON, or null). Every observation must
match a documented path and method, answer with a documented status, and carry a body valid
against that response's schema. Every documented path and method must have been observed.
Prints one line per problem and a closing "N passed, N failed" line; exit 1 on any problem.
"""
import json
import re
import sys

import jsonschema
import yaml
from openapi_spec_validator import validate


def resolve(node, root):
    """Inline every local $ref (the spec has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(target, root)
        return {k: resolve(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, root) for v in node]
    return node


def template_regex(path):
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def main():
    spec_path, obs_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        raw = yaml.safe_load(f)
    validate(raw)
    spec = resolve(raw, raw)
    with open(obs_path) as f:
        observations = json.load(f)
    ops = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                ops[(path, method.upper())] = op
    seen = set()
    passed, failed = 0, 0

    def problem(msg):
        nonlocal failed
        failed += 1
        print("FAIL: " + msg)

    for o in observations:
        where = "%s %s -> %s" % (o["method"], o["path"], o["status"])
        match = [(p, m) for (p, m) in ops if m == o["method"] and template_regex(p).match(o["path"])]
        if not match:
            problem(where + ": not a documented path and method")
            continue
        key = match[0]
        seen.add(key)
        responses = ops[key]["responses"]
        resp = responses.get(str(o["status"]))
        if resp is None:
            problem(where + ": status not documented (documented: %s)" % ", ".join(responses))
            continue
        schema = resp.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            try:
                jsonschema.Draft202012Validator(schema).validate(o["body"])
            except jsonschema.ValidationError as e:
                problem(where + ": body does not match the schema: %s (body: %s)" % (e.message, json.dumps(o["body"])[:500]))
                continue
        passed += 1
    for key in sorted(ops):
        if key not in seen:
            problem("%s %s: documented but never exercised" % (key[1], key[0]))
    print("openapi: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
