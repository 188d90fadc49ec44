#!/usr/bin/env python3
"""Probe which JSON Schema keywords a running Ollama server honours in /api/generate `format`.

Usage:
    python scripts/probe_schema_keywords.py --host 127.0.0.1:11435 [--model tiny] [--json OUT.json]

Meant for the deterministic `tiny` model made by scripts/make_tiny_gguf.py (started with
scripts/local-ollama start).  Left alone, that model's JSON is as small as a grammar allows:
`{}`, `[]`, `""`, `1`, and it closes strings / arrays / objects as soon as it may.  Each probe
sends a schema using ONE keyword, designed so that this natural output would VIOLATE the
keyword, together with a CONTROL schema (the same schema without that keyword) that shows
the natural output.  Verdicts:

  rejected                                   HTTP error (the error text is shown)
  enforced                                   output satisfies the schema and the control output does not
  accepted but not enforced (output violates)  HTTP 200, output fails validation
  accepted, output happens to satisfy (cannot tell)  the control output satisfies it too
  enforced (kept the value open); ...        output cut inside a value that the keyword forced
                                             open (the control closes it): by num_predict, or by
                                             Ollama's repeat guard (done:false, no done_reason)
  BROKEN: invalid JSON ...                   the model stopped by itself with invalid JSON
  no effect; ... (same as control)           output not parseable and the keyword changed nothing

Validation uses python `jsonschema` (Draft 2020-12, with format checking).
Needs only the standard library and jsonschema.  Requests use temperature 0, a fixed seed
and num_predict (default 48).
"""

import argparse
import json
import sys
import urllib.error
import urllib.request

try:
    import referencing
    from jsonschema import Draft202012Validator, FormatChecker
except ImportError:  # pragma: no cover
    sys.exit("probe_schema_keywords.py needs jsonschema: pip install jsonschema")


def W(value_schema, **extra):
    """Object wrapper: {"v": <value_schema>} with v required."""
    s = {"type": "object", "properties": {"v": value_schema}, "required": ["v"]}
    s.update(extra)
    return s


ANY = W({})  # natural value: ""

# (keyword, schema, control schema, note)
PROBES = [
    ("type", {"type": "integer"}, {}, "top-level integer; natural value is {}"),
    ("properties", W({"type": "integer"}), ANY, 'property v: integer; natural v is ""'),
    (
        "required",
        W({"type": "integer"}),
        {"type": "object", "properties": {"v": {"type": "integer"}}},
        "natural output is {}",
    ),
    (
        "required (key not in properties)",
        {"type": "object", "required": ["x"]},
        {"type": "object"},
        "natural output is {}",
    ),
    (
        "items",
        {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        {"type": "array", "items": {}, "minItems": 1},
        "needs minItems to get an element at all",
    ),
    ("enum", W({"enum": ["abc", "xyz"]}), ANY, ""),
    ("const", W({"const": "fixed"}), ANY, ""),
    ("minimum", W({"type": "integer", "minimum": 5}), W({"type": "integer"}), "natural integer is 1"),
    ("minimum (number)", W({"type": "number", "minimum": 5}), W({"type": "number"}), ""),
    ("maximum", W({"type": "integer", "maximum": 0}), W({"type": "integer"}), ""),
    ("exclusiveMinimum", W({"type": "integer", "exclusiveMinimum": 1}), W({"type": "integer"}), ""),
    ("exclusiveMaximum", W({"type": "integer", "exclusiveMaximum": 1}), W({"type": "integer"}), ""),
    ("multipleOf", W({"type": "integer", "multipleOf": 7}), W({"type": "integer"}), ""),
    ("minLength", W({"type": "string", "minLength": 3}), W({"type": "string"}), 'natural string is ""'),
    (
        "maxLength",
        W({"type": "string", "minLength": 3, "maxLength": 5}),
        W({"type": "string", "minLength": 3}),
        "with minLength 3 the model never closes the string",
    ),
    ("pattern", W({"type": "string", "pattern": "^[a-z]{3}$"}), W({"type": "string"}), ""),
    ("pattern: alternation", W({"type": "string", "pattern": "^(abc|xyz)$"}), W({"type": "string"}), ""),
    ("pattern: [0-9] class", W({"type": "string", "pattern": "^[0-9]{2}-[0-9]{2}$"}), W({"type": "string"}), ""),
    (
        "pattern: not anchored",
        W({"type": "string", "pattern": "[a-z]{3}"}),
        W({"type": "string"}),
        "valid JSON Schema (patterns are unanchored by default)",
    ),
    ("pattern: \\d escape", W({"type": "string", "pattern": "^\\d{3}$"}), W({"type": "string"}), ""),
    ("pattern: \\w escape", W({"type": "string", "pattern": "^\\w{3}$"}), W({"type": "string"}), ""),
    ("pattern: negated class", W({"type": "string", "pattern": "^[^a]{2}$"}), W({"type": "string"}), ""),
    ("pattern: lazy quantifier", W({"type": "string", "pattern": "^a+?$"}), W({"type": "string"}), ""),
    ("pattern: back-reference", W({"type": "string", "pattern": "^(a)\\1$"}), W({"type": "string"}), ""),
    ("format: date-time", W({"type": "string", "format": "date-time"}), W({"type": "string"}), ""),
    ("format: date", W({"type": "string", "format": "date"}), W({"type": "string"}), ""),
    ("format: time", W({"type": "string", "format": "time"}), W({"type": "string"}), ""),
    ("format: uuid", W({"type": "string", "format": "uuid"}), W({"type": "string"}), ""),
    ("format: email", W({"type": "string", "format": "email"}), W({"type": "string"}), ""),
    ("format: uri", W({"type": "string", "format": "uri"}), W({"type": "string"}), ""),
    ("format: ipv4", W({"type": "string", "format": "ipv4"}), W({"type": "string"}), ""),
    ("minItems (no items)", {"type": "array", "minItems": 2}, {"type": "array"}, "natural array is []"),
    (
        "minItems (with items)",
        {"type": "array", "items": {"type": "integer"}, "minItems": 2},
        {"type": "array", "items": {"type": "integer"}},
        "natural array is []",
    ),
    (
        "maxItems",
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        {"type": "array", "items": {"type": "integer"}, "minItems": 2},
        "the model never adds optional items, so maxItems cannot be seen failing",
    ),
    (
        "uniqueItems",
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "uniqueItems": True},
        {"type": "array", "items": {"type": "integer"}, "minItems": 2},
        "natural is [1,1]",
    ),
    (
        "additionalProperties: false",
        {"type": "object", "additionalProperties": False},
        {"type": "object"},
        "the model never adds optional keys",
    ),
    (
        "additionalProperties: schema",
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {"type": "object"},
        "the model never adds optional keys",
    ),
    (
        "patternProperties",
        {"type": "object", "patternProperties": {"^x": {"type": "integer"}}},
        {"type": "object"},
        "the model never adds optional keys",
    ),
    (
        "$ref + $defs",
        {
            "type": "object",
            "properties": {"v": {"$ref": "#/$defs/n"}},
            "required": ["v"],
            "$defs": {"n": {"type": "integer"}},
        },
        ANY,
        "",
    ),
    (
        "$ref + definitions",
        {
            "type": "object",
            "properties": {"v": {"$ref": "#/definitions/n"}},
            "required": ["v"],
            "definitions": {"n": {"type": "integer"}},
        },
        ANY,
        "",
    ),
    ("anyOf", W({"anyOf": [{"type": "integer"}, {"type": "boolean"}]}), ANY, ""),
    ("oneOf", W({"oneOf": [{"type": "integer"}, {"type": "boolean"}]}), ANY, "disjoint branches"),
    (
        "oneOf (overlapping)",
        W({"oneOf": [{"type": "integer"}, {"type": "integer", "minimum": 0}]}),
        W({"type": "integer"}),
        "1 matches both branches: only a negative integer is valid",
    ),
    ("allOf", W({"allOf": [{"type": "integer"}, {"minimum": 5}]}), ANY, ""),
    (
        "allOf (objects)",
        W(
            {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"type": "object", "properties": {"b": {"const": "fixed"}}, "required": ["b"]},
                ]
            }
        ),
        ANY,
        "allOf of object schemas",
    ),
    ("allOf (string+minLength)", W({"allOf": [{"type": "string"}, {"minLength": 3}]}), ANY, ""),
    ("not", W({"not": {"type": "string"}}), ANY, ""),
    (
        "if/then/else",
        W({"type": "string", "if": {"type": "string"}, "then": {"minLength": 3}, "else": {"const": "never"}}),
        W({"type": "string"}),
        "if always true for a string -> minLength 3",
    ),
    (
        "prefixItems",
        {"type": "array", "prefixItems": [{"type": "integer"}, {"const": "fixed"}], "minItems": 2},
        {"type": "array", "minItems": 2},
        "needs minItems so the items are present",
    ),
    (
        "dependentRequired",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a"],
            "dependentRequired": {"a": ["b"]},
        },
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a"]},
        'natural is {"a":1}',
    ),
    (
        "propertyNames",
        {"type": "object", "propertyNames": {"pattern": "^x"}},
        {"type": "object"},
        "the model never adds optional keys",
    ),
    ("minProperties", {"type": "object", "minProperties": 1}, {"type": "object"}, "natural is {}"),
    (
        "maxProperties",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "maxProperties": 1,
        },
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]},
        "contradicts required (unsatisfiable): shows whether it is read at all",
    ),
    (
        "contains",
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "contains": {"const": 5}},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "natural [1] has no 5",
    ),
    ('type: ["integer","null"]', W({"type": ["integer", "null"]}), ANY, ""),
    (
        "nullable (OpenAPI)",
        W({"type": "integer", "nullable": True}),
        W({"type": "integer"}),
        "not a JSON Schema keyword; the model never picks null when 1 is allowed",
    ),
]


# Schemas that are fine JSON Schema but make ollama 0.9.3's server process die (SIGSEGV in
# its schema-to-grammar conversion): only sent with --crash-tests.
CRASHERS = [
    ("pattern: lookahead (?=", W({"type": "string", "pattern": "^(?=a)abc$"})),
    ("pattern: non-capturing group (?:", W({"type": "string", "pattern": "^(?:ab)c$"})),
]

# Other shapes of `format` (HTTP status and output only)
EDGE = [
    ("format: {} (empty schema)", {}),
    ("format: null", None),
    ('format: "json"', "json"),
    ('format: "yaml" (other string)', "yaml"),
    ("format: [1,2] (array)", [1, 2]),
    ("format: true", True),
    ("format: 5", 5),
    ("unknown type name", W({"type": "strng"})),
    ("unknown keyword only", W({"foo": 1})),
    ("description only", W({"description": "x"})),
    ("title only (pydantic's Any field)", W({"title": "V"})),
    (
        "pydantic Optional[str] shape",
        W({"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "V"}),
    ),
    (
        "pydantic nested model shape",
        {
            "$defs": {
                "Inner": {
                    "properties": {"n": {"title": "N", "type": "integer"}},
                    "required": ["n"],
                    "title": "Inner",
                    "type": "object",
                }
            },
            "properties": {"inner": {"$ref": "#/$defs/Inner"}},
            "required": ["inner"],
            "title": "Outer",
            "type": "object",
        },
    ),
    ("keyword without type (minimum)", W({"minimum": 5})),
    ("$ref to a missing $defs entry", W({"$ref": "#/$defs/missing"})),
    ("$ref to a remote URL", W({"$ref": "https://example.invalid/x.json"})),
    ("unknown format name", W({"type": "string", "format": "bogus"})),
    (
        "items: false (closed tuple)",
        {"type": "array", "prefixItems": [{"type": "integer"}], "items": False, "minItems": 1},
    ),
    ("enum of integers", W({"enum": [5, 7]})),
    ("not together with type", W({"type": "integer", "not": {"const": 1}})),
]


class ServerGone(Exception):
    pass


def generate(host, model, schema, num_predict, timeout=120):
    body = {
        "model": model,
        "prompt": "hi",
        "stream": False,
        "format": schema,
        "options": {"temperature": 0, "seed": 1, "num_predict": num_predict},
    }
    req = urllib.request.Request(
        f"http://{host}/api/generate", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, {"error": text}
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        raise ServerGone(f"{type(e).__name__}: {e}") from e


def format_checker():
    # FormatChecker() mixes all drafts' checkers ('time' would be draft 3's %H:%M:%S)
    fc = FormatChecker(formats=())
    fc.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    if "uri" not in fc.checkers:  # rfc3987 not installed: a plain scheme:rest check
        import re

        @fc.checks("uri")
        def _uri(value):
            return not isinstance(value, str) or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$", value))

    return fc


FC = format_checker()


def check(schema, text):
    """-> (parsed_ok, valid, message)"""
    try:
        inst = json.loads(text)
    except ValueError:
        return False, False, "not JSON"
    # an empty registry: never fetch remote $refs
    v = Draft202012Validator(schema, format_checker=FC, registry=referencing.Registry())
    try:
        errs = sorted(v.iter_errors(inst), key=lambda e: list(e.path))
    except Exception as e:  # unresolvable $ref, bad regex, ...
        return True, False, f"cannot validate here ({type(e).__name__.lstrip('_')})"
    if errs:
        return True, False, errs[0].message
    return True, True, ""


def run_probe(host, model, probe, num_predict):
    keyword, schema, control, note = probe
    row = {"keyword": keyword, "schema": schema, "note": note}
    st, res = generate(host, model, schema, num_predict)
    row["status"] = st
    if st != 200:
        row["error"] = " ".join(str(res.get("error", res)).split())
        row["verdict"] = "rejected"
        return row
    out = res.get("response", "")
    row["output"] = out
    row["done_reason"] = res.get("done_reason")
    row["done"] = res.get("done")
    cst, cres = generate(host, model, control, num_predict)
    cout = cres.get("response", "") if cst == 200 else None
    row["control_output"] = cout if cst == 200 else f"HTTP {cst}: {cres.get('error', cres)}"
    ok, valid, msg = check(schema, out)
    c_ok, c_valid, _ = check(schema, cout) if cout is not None else (False, False, "")
    row["violation"] = msg
    if not ok and row["done"] and row["done_reason"] != "length":
        row["verdict"] = "BROKEN: invalid JSON although the model stopped by itself (grammar bug)"
    elif not ok:
        if not row["done"]:
            # ollama's token-repeat guard: the same token 30+ times in a row ends the
            # generation; the reply then has done:false and no done_reason
            cut = "generation aborted by Ollama (done:false, no done_reason)"
        else:
            cut = "truncated at num_predict"
        if cout is not None and out != cout and c_ok and not c_valid:
            row["verdict"] = f"enforced (kept the value open); {cut}"
        elif cout is not None and out == cout:
            row["verdict"] = f"no effect; {cut} (same as control)"
        else:
            row["verdict"] = f"output not JSON; {cut}"
    elif not valid:
        row["verdict"] = "accepted but not enforced (output violates)"
    elif cout is not None and c_ok and not c_valid:
        row["verdict"] = "enforced"
    elif cout is not None and not c_ok and out != cout:
        row["verdict"] = "enforced"  # control never closed; the keyword made it valid JSON
    else:
        row["verdict"] = "accepted, output happens to satisfy (cannot tell)"
    return row


def run_edge(host, model, name, schema, num_predict):
    st, res = generate(host, model, schema, num_predict)
    row = {"keyword": name, "schema": schema, "status": st}
    if st != 200:
        row["error"] = " ".join(str(res.get("error", res)).split())
        row["verdict"] = "rejected"
        return row
    row["output"] = res.get("response", "")
    row["done_reason"] = res.get("done_reason")
    if isinstance(schema, dict) and schema:
        ok, valid, msg = check(schema, row["output"])
        if msg.startswith("cannot validate"):
            row["verdict"] = f"accepted; {msg}"
        elif not ok:
            row["verdict"] = "output is not JSON"
        else:
            row["verdict"] = "output satisfies the schema" if valid else f"output violates: {msg}"
    elif schema is None:
        row["verdict"] = "accepted: same as no format (plain text)"
    elif schema == {}:
        row["verdict"] = "accepted: any JSON value"
    else:
        row["verdict"] = "accepted"
    return row


def md_cell(s, limit=70):
    s = s if isinstance(s, str) else json.dumps(s, separators=(",", ":"))
    s = " ".join(s.split("\n")).strip() if "\n" in s else s
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return "`" + s.replace("|", "\\|").replace("`", "'") + "`" if s else "` `"


def edge_table(rows):
    lines = ["| # | case | format sent | HTTP | output / error | note |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        out = md_cell(r["error"] if r["status"] != 200 else r["output"], 60)
        if r.get("done_reason") == "length":
            out += " (length)"
        lines.append(
            f"| {i} | {r['keyword']} | {md_cell(r['schema'], 90)} | {r['status']} | {out} | "
            f"{r['verdict'].replace('|', '/')} |"
        )
    return "\n".join(lines)


def table(rows):
    lines = [
        "| # | keyword | schema sent | HTTP | output | control output (keyword removed) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        if r["status"] != 200:
            out, ctl = md_cell(str(r.get("error"))), "—"
        else:
            out = md_cell(r["output"], 50)
            if r.get("done_reason") == "length":
                out += " (length)"
            elif r.get("done") is False:
                out += " (done:false)"
            ctl = md_cell(r["control_output"], 50)
        verdict = r["verdict"]
        if r.get("violation") and "violates" in verdict:
            verdict += f": {r['violation'][:60]}"
        lines.append(
            f"| {i} | {r['keyword']} | {md_cell(r['schema'], 110)} | {r['status']} | {out} | {ctl} | "
            f"{verdict.replace('|', '/')} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Probe JSON Schema keyword support of Ollama's format field.")
    ap.add_argument("--host", default="127.0.0.1:11435", help="HOST:PORT of the Ollama server")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--num-predict", type=int, default=48)
    ap.add_argument("--json", metavar="OUT", help="also write the raw results as JSON")
    ap.add_argument(
        "--crash-tests",
        action="store_true",
        help="also send the schemas known to crash ollama 0.9.3 (the server dies!)",
    )
    ap.add_argument(
        "--restart-cmd",
        metavar="CMD",
        help="shell command run after each crash test to bring the server back "
        "(e.g. 'scripts/local-ollama start --dir DIR --port PORT')",
    )
    args = ap.parse_args(argv)
    host = args.host.removeprefix("http://").rstrip("/")
    try:
        with urllib.request.urlopen(f"http://{host}/api/version", timeout=5) as r:
            version = json.load(r).get("version")
    except Exception as e:
        sys.exit(f"cannot reach Ollama at {host}: {e}")
    try:
        rows = [run_probe(host, args.model, p, args.num_predict) for p in PROBES]
        edge = [run_edge(host, args.model, *e, num_predict=args.num_predict) for e in EDGE]
    except ServerGone as e:
        sys.exit(f"the server stopped answering during the probes ({e}); see its log")
    crash = []
    if args.crash_tests:
        import shlex
        import subprocess

        for name, schema in CRASHERS:
            row = {"keyword": name, "schema": schema}
            try:
                row.update(run_edge(host, args.model, name, schema, args.num_predict))
            except ServerGone as e:
                row.update(status="—", error=f"connection dropped ({e.args[0][:60]})", verdict="server process CRASHED")
            crash.append(row)
            if args.restart_cmd:
                subprocess.run(shlex.split(args.restart_cmd), check=True, stdout=subprocess.DEVNULL)
            elif row.get("verdict") == "server process CRASHED":
                break
    print(f"Ollama {version} at {host}, model {args.model}, num_predict {args.num_predict}\n")
    print("## One keyword at a time\n")
    print(table(rows))
    print("\n## Other shapes of `format`\n")
    print(edge_table(edge))
    if args.crash_tests:
        print("\n## Crash tests\n")
        print(edge_table(crash))
    else:
        print("\n(not sent: " + ", ".join(n for n, _ in CRASHERS) + " -- they crash the server; see --crash-tests)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"version": version, "model": args.model, "rows": rows, "edge": edge, "crash": crash}, f, indent=1
            )


if __name__ == "__main__":
    main()
