"""The fleet for the mock server, read from topology/world.yaml (Python stdlib only).

PyYAML is not installed here, so this reads the small subset of YAML the shipped
topology uses: top-level sections; list items that are flow mappings
(`- { id: sha, lat: 31.23, ... }`) or block mappings (`- name: x` then indented
`key: value` lines whose values may be flow mappings); quoted or plain scalars;
`# comments`. Anything else raises ValueError naming the line, so a change of
style in world.yaml fails loudly instead of giving the mock a wrong fleet.
"""

import math
import re

# Route factor per link kind, as in topology/world.yaml's header: one-way delay is
# great-circle distance at ~200 km/ms times this factor unless a link states delay_ms.
ROUTE_FACTOR = {"undersea": 1.3, "terrestrial": 1.5, "internet": 2.0}
EARTH_RADIUS_KM = 6371.0
FIBER_KM_PER_MS = 200.0


def _opens_quote(s, i):
    """A quote opens a quoted scalar only where a value starts (`Xi'an` is plain)."""
    before = s[:i].rstrip()
    return not before or before[-1] in ":,[{-"


def _split_top(s):
    """Splits `s` on commas that are not inside brackets, braces or quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for i, ch in enumerate(s):
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'" and _opens_quote(s, i):
            quote = ch
            cur.append(ch)
        elif ch in "[{":
            depth += 1
            cur.append(ch)
        elif ch in "]}":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


def _strip_comment(line):
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'" and _opens_quote(line, i):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _scalar(v):
    v = v.strip()
    if v.startswith("{"):
        if not v.endswith("}"):
            raise ValueError(f"unclosed flow mapping: {v}")
        return _flow_map(v[1:-1])
    if v.startswith("["):
        if not v.endswith("]"):
            raise ValueError(f"unclosed flow list: {v}")
        return [_scalar(p) for p in _split_top(v[1:-1])]
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    if re.fullmatch(r"-?\d+\.\d*", v):
        return float(v)
    if v in ("true", "false"):
        return v == "true"
    return v


def _flow_map(body):
    out = {}
    for part in _split_top(body):
        key, sep, val = part.partition(":")
        if not sep:
            raise ValueError(f"expected `key: value` in flow mapping, found `{part.strip()}`")
        out[key.strip()] = _scalar(val)
    return out


def parse_yaml_subset(text):
    """Returns {section: value} for the subset described in the module doc."""
    doc, section, item, item_indent = {}, None, None, None
    for no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        try:
            if indent == 0:
                key, _, val = body.partition(":")
                section = key.strip()
                doc[section] = _scalar(val) if val.strip() else []
                item = None
            elif body.startswith("- "):
                rest = body[2:].strip()
                if rest.startswith("{"):
                    item = _scalar(rest)
                else:
                    k, _, v = rest.partition(":")
                    item = {k.strip(): _scalar(v)}
                doc[section].append(item)
                item_indent = indent
            elif item is not None and indent > item_indent:
                k, sep, v = body.partition(":")
                if not sep:
                    raise ValueError("expected `key: value`")
                item[k.strip()] = _scalar(v)
            else:
                raise ValueError("unexpected line for this small YAML reader")
        except ValueError as e:
            raise ValueError(f"line {no}: {e}: {raw.strip()}") from None
    return doc


def great_circle_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def load_fleet(path):
    """Nodes, links and services of a topology file, with each link's expected one-way ms."""
    with open(path, encoding="utf-8") as f:
        doc = parse_yaml_subset(f.read())
    nodes = [
        {k: n[k] for k in ("id", "city", "country", "region", "lat", "lon")}
        for n in doc.get("nodes", [])
    ]
    by_id = {n["id"]: n for n in nodes}
    links = []
    for l in doc.get("links", []):
        a, b = l["between"]
        if "delay_ms" in l:
            expected = float(l["delay_ms"])
        else:
            na, nb = by_id[a], by_id[b]
            km = great_circle_km(na["lat"], na["lon"], nb["lat"], nb["lon"])
            expected = km / FIBER_KM_PER_MS * ROUTE_FACTOR[l["kind"]]
        links.append({
            "a": a,
            "b": b,
            "kind": l["kind"],
            "name": l.get("name"),
            "capacity_mbps": float(l["capacity_mbps"]),
            "expected_ms": round(expected, 3),
        })
    services = [
        {
            "name": s["name"],
            "protocol": s["protocol"],
            "ingress": s["ingress"]["node"],
            "egress": s["egress"]["node"],
        }
        for s in doc.get("services", [])
    ]
    return nodes, links, services
