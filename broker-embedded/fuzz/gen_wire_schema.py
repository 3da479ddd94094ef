#!/usr/bin/env python3
"""Generates broker-embedded/src/server/wire_schema.rs from the kafka-protocol crate's decoders.

The server checks every request frame against these layouts before handing it to the
kafka-protocol decoders (see src/server/frame_check.rs): those decoders reserve Vec capacity
from array counts read off the wire, so a tiny frame claiming two billion elements would abort
the process. The layouts must match the decoders byte for byte, so they are derived
mechanically from the generated `impl Decodable` blocks of the exact crate version in use.

Covers every request message of the crate, so an API the server starts to implement later
needs no change here. Usage (from the repository root, after a cargo build has fetched the
crate):
    python3 broker-embedded/fuzz/gen_wire_schema.py \
        ~/.cargo/registry/src/*/kafka-protocol-0.18.0 > broker-embedded/src/server/wire_schema.rs
    cargo fmt
Re-run it whenever the kafka-protocol dependency changes.
"""

import re
import sys
from pathlib import Path

# Every request message of the crate (so an API added to the server later is covered) and the
# request header.
HEADER = "request_header"

FIXED = {
    "Int8": 1,
    "Boolean": 1,
    "Int16": 2,
    "UInt16": 2,
    "Int32": 4,
    "Int64": 8,
    "Float64": 8,
    "Uuid": 16,
}
SIMPLE = {
    "String": "Enc::Str",
    "CompactString": "Enc::CStr",
    "Bytes": "Enc::Bytes",
    "CompactBytes": "Enc::CBytes",
}
ELEM = {"String": "Elem::Str", "CompactString": "Elem::CStr"}

DECODE = re.compile(r"types::(.*)\.decode\(buf\)\?")
COND = re.compile(r"^if (.*) \{$")


def fail(msg):
    sys.stderr.write(f"gen_wire_schema: {msg}\n")
    sys.exit(1)


def const_name(module, struct):
    return f"{module.upper()}__{re.sub(r'(?<!^)(?=[A-Z])', '_', struct).upper()}"


def inner_type(rust_type):
    t = rust_type.strip()
    for wrapper in ("Option<", "Vec<"):
        while t.startswith(wrapper):
            t = t[len(wrapper):-1]
    return t.split("::")[-1]


def parse_cond(cond, lo, hi):
    """Narrows [lo, hi] by `cond`; returns (then_range, else_ranges)."""
    m = re.fullmatch(r"version >= (\d+)", cond)
    if m:
        n = int(m.group(1))
        return (max(lo, n), hi), [(lo, min(hi, n - 1))]
    m = re.fullmatch(r"version <= (\d+)", cond)
    if m:
        n = int(m.group(1))
        return (lo, min(hi, n)), [(max(lo, n + 1), hi)]
    m = re.fullmatch(r"version == (\d+)", cond)
    if m:
        n = int(m.group(1))
        return (max(lo, n), min(hi, n)), [(lo, min(hi, n - 1)), (max(lo, n + 1), hi)]
    m = re.fullmatch(r"version >= (\d+) && version <= (\d+)", cond)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        return (max(lo, a), min(hi, b)), [(lo, min(hi, a - 1)), (max(lo, b + 1), hi)]
    fail(f"unknown condition {cond!r}")


def encoding(expr, field_type, module):
    if expr in FIXED:
        return f"Enc::Fixed({FIXED[expr]})"
    if expr in SIMPLE:
        return SIMPLE[expr]
    if expr == "Struct { version }":
        return f"Enc::Struct(&{const_name(module, inner_type(field_type))})"
    if expr == "OptionStruct { version }":
        return f"Enc::OptStruct(&{const_name(module, inner_type(field_type))})"
    m = re.fullmatch(r"(Compact)?Array\(types::(.*)\)", expr)
    if m:
        arr = "Enc::CArr" if m.group(1) else "Enc::Arr"
        el = m.group(2)
        if el == "Struct { version }":
            return f"{arr}(Elem::Struct(&{const_name(module, inner_type(field_type))}))"
        if el in FIXED:
            return f"{arr}(Elem::Fixed({FIXED[el]}))"
        if el in ELEM:
            return f"{arr}({ELEM[el]})"
    fail(f"unknown decoder {expr!r} in {module}")


def parse_expr(lines, i, lo, hi, field_type, module, alts):
    """Parses an expression starting at lines[i]; returns the index after it."""
    line = lines[i]
    m = DECODE.fullmatch(line)
    if m:
        if lo <= hi:
            alts.append((lo, hi, encoding(m.group(1), field_type, module)))
        return i + 1
    m = COND.fullmatch(line)
    if m:
        (tlo, thi), elses = parse_cond(m.group(1), lo, hi)
        i = parse_expr(lines, i + 1, tlo, thi, field_type, module, alts)
        if lines[i] != "} else {":
            fail(f"expected else in {module}: {lines[i]!r}")
        for elo, ehi in elses:
            parse_expr(lines, i + 1, elo, ehi, field_type, module, alts)
        i = parse_expr(lines, i + 1, 1, 0, field_type, module, [])
        if lines[i] not in ("}", "};"):
            fail(f"expected end of if in {module}: {lines[i]!r}")
        return i + 1
    # A default value: no bytes on the wire.
    return i + 1


def parse_struct_fields(text):
    fields = {}
    for name, body in re.findall(r"pub struct (\w+) \{(.*?)\n\}", text, re.S):
        fields[name] = dict(re.findall(r"pub (\w+): ([^\n]+),", body))
    return fields


def parse_decoder(module, name, body, types):
    lines = [l.strip() for l in body.splitlines() if l.strip()]
    m = re.fullmatch(r"if version < (\d+) \|\| version > (\d+) \{", lines[0])
    m1 = re.fullmatch(r"if version != (\d+) \{", lines[0])
    if m:
        vmin, vmax = int(m.group(1)), int(m.group(2))
    elif m1:
        vmin = vmax = int(m1.group(1))
    else:
        fail(f"no version check in {module}::{name}")
    i = 3
    fields = []
    tags = []
    flexible = None
    while i < len(lines):
        line = lines[i]
        if line.startswith("Ok(Self {"):
            break
        if line == "let mut unknown_tagged_fields = BTreeMap::new();":
            m = re.fullmatch(r"if version >= (\d+) \{", lines[i + 1])
            always = lines[i + 1].startswith("let num_tagged_fields")
            if m or always:
                flexible = int(m.group(1)) if m else vmin
                # Known tags: `N => {` arms of `match tag`.
                j = i + 2
                while not lines[j].startswith("Ok(Self {"):
                    tm = re.fullmatch(r"(\d+) => \{", lines[j])
                    if tm:
                        tag = int(tm.group(1))
                        alts = []
                        k = j + 1
                        cm = COND.fullmatch(lines[k])
                        lo, hi = 0, 32767
                        if cm:
                            (lo, hi), _ = parse_cond(cm.group(1), lo, hi)
                            k += 1
                        am = re.fullmatch(r"(\w+) = types::(.*)\.decode\(buf\)\?;", lines[k])
                        if not am:
                            fail(f"unexpected tagged field in {module}::{name}: {lines[k]!r}")
                        alts.append((lo, hi, encoding(am.group(2), types[am.group(1)], module)))
                        tags.append((tag, alts))
                    j += 1
            break
        m = re.fullmatch(r"let mut (\w+) = .*;", line)
        if m:
            i += 1
            continue
        m = re.fullmatch(r"let (\w+) = (.*)", line)
        if not m:
            fail(f"unexpected line in {module}::{name}: {line!r}")
        fname = m.group(1)
        rest = m.group(2)
        alts = []
        sub = [rest.rstrip(";")] if rest.endswith(";") else [rest]
        if rest.endswith(";"):
            parse_expr(sub, 0, vmin, vmax, types[fname], module, alts)
            i += 1
        else:
            # Multi-line `if` expression.
            block = [rest] + lines[i + 1:]
            end = parse_expr(block, 0, vmin, vmax, types[fname], module, alts)
            i += end
        fields.append((fname, alts))
    return vmin, vmax, fields, tags, flexible


def api_keys(root):
    """Request struct name -> ApiKey variant, from the crate's `ApiKey` enum."""
    text = (root / "src" / "messages.rs").read_text()
    body = re.search(r"pub enum ApiKey \{(.*?)\n\}", text, re.S).group(1)
    return dict(re.findall(r"/// API key for request (\w+)\n\s+(\w+) = \d+,", body))


def main():
    root = Path(sys.argv[1])
    keys = api_keys(root)
    modules = [HEADER] + sorted(
        p.stem for p in (root / "src" / "messages").glob("*_request.rs")
    )
    out = []
    order = []
    top = []
    for module in modules:
        text = (root / "src" / "messages" / f"{module}.rs").read_text()
        types = parse_struct_fields(text)
        for name, body in re.findall(
            r"impl Decodable for (\w+) \{\n    fn decode<B: ByteBuf>\(buf: &mut B, version: i16\) -> Result<Self> \{\n(.*?)\n    \}\n\}",
            text,
            re.S,
        ):
            parsed = parse_decoder(module, name, body, types[name])
            order.append((module, name, parsed))
            if name in keys:
                top.append((keys[name], const_name(module, name)))
    if len(top) != len(keys):
        missing = set(keys.values()) - {k for k, _ in top}
        fail(f"no decoder found for {sorted(missing)}")
    out.append("//! Wire layouts of every request message, generated by")
    out.append("//! `broker-embedded/fuzz/gen_wire_schema.py` from the `impl Decodable` blocks of")
    out.append("//! kafka-protocol 0.18.0. Do not edit by hand: re-run the script when the crate changes.")
    out.append("")
    out.append("use kafka_protocol::messages::ApiKey;")
    out.append("")
    out.append("use super::frame_check::{Elem, Enc, Field, Schema, Tag};")
    out.append("")
    out.append("/// The body layout of each API's request.")
    out.append("pub(super) fn request_schema(api: ApiKey) -> &'static Schema {")
    out.append("    match api {")
    for key, const in top:
        out.append(f"        ApiKey::{key} => &{const},")
    out.append("    }")
    out.append("}")
    out.append("")
    for module, name, (vmin, vmax, fields, tags, flexible) in order:
        out.append(f"/// `{module}::{name}`.")
        out.append(f"pub(super) static {const_name(module, name)}: Schema = Schema {{")
        out.append(f"    versions: ({vmin}, {vmax}),")
        out.append(f"    flexible_from: {flexible if flexible is not None else 'i16::MAX'},")
        out.append("    fields: &[")
        for fname, alts in fields:
            a = ", ".join(f"({lo}, {hi}, {enc})" for lo, hi, enc in alts)
            out.append(f"        Field {{ name: \"{fname}\", alts: &[{a}] }},")
        out.append("    ],")
        out.append("    tags: &[")
        for tag, alts in tags:
            a = ", ".join(f"({lo}, {hi}, {enc})" for lo, hi, enc in alts)
            out.append(f"        Tag {{ tag: {tag}, alts: &[{a}] }},")
        out.append("    ],")
        out.append("};")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
