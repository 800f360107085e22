#!/usr/bin/env python3
"""A mock controller for developing the live map: serves controller/map/ at /map and
the admin API of docs/map.md (nodes, links, routes, services, the SSE stream) for the
fleet of topology/world.yaml, with synthetic measurements and load. Python 3 stdlib only.

    python3 controller/map/dev/mock_server.py [--port 9000] [--topology FILE]

Hooks to break things by hand (each pushes `links` and `timeline` events):
    POST /mock/cut?a=sha&b=pdx            POST /mock/restore?a=sha&b=pdx
    POST /mock/impair?a=sha&b=pdx&loss=0.03&jitter_ms=12
    POST /mock/node?id=sha&connected=false (a relay's session to the controller drops)
    POST /mock/drop-streams               (closes every SSE stream: the page reconnects)
    POST /api/v1/lab/links/{a}/{b}/cut|restore|impair   (the lab's own form)
"""

import argparse
import heapq
import json
import math
import os
import queue
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleet  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.dirname(HERE)  # controller/map
WORLD = os.path.join(HERE, "..", "..", "..", "topology", "world.yaml")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
DEGRADED_LOSS = 0.01      # docs/map.md: up, but loss > 1% ...
DEGRADED_JITTER_MS = 10.0  # ... or jitter > 10 ms
HOLD_DOWN_S = 5.0          # the real controller holds a restored link down 10 s by default
HELD_DOWN_PENALTY_MS = 1000.0
FLUSH_S = 0.25             # at most 4 `links` events per second
KEEPALIVE_S = 15.0
MBPS_PER_CLASS = (1.5, 1.2)  # a class's media, Asia->NA and NA->Asia

# Synthetic demand, 35,000 classes at peak split over these (Asia, North America) pairs.
DEMAND = [
    ("sha", "lax", 5000), ("pek", "sfo", 3000), ("can", "lax", 3000), ("szx", "sea", 2000),
    ("hkg", "nyc", 2000), ("tpe", "lax", 2500), ("tyo", "lax", 3000), ("osa", "sfo", 1500),
    ("sel", "sea", 2000), ("sin", "lax", 2000), ("bom", "nyc", 1000), ("sha", "ord", 2000),
    ("wuh", "dfw", 1000), ("tyo", "yyz", 1500), ("mnl", "lax", 600), ("syd", "lax", 300),
    ("ctu", "yvr", 1000), ("kul", "iad", 500),
]


def link_key(a, b):
    return (a, b) if a <= b else (b, a)


class Fleet:
    """All mock state behind one lock; listeners get (event, data) through queues."""

    def __init__(self, topology, seed, with_load):
        nodes, links, services = fleet.load_fleet(topology)
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.started = time.time()
        self.with_load = with_load
        self.nodes = nodes
        self.node_ids = {n["id"] for n in nodes}
        self.links = []
        for l in links:
            self.links.append(dict(l, state="up", changed_at=None, cut=False,
                                   impair_loss=0.0, impair_jitter=0.0, impair_delay=None,
                                   held_until=None, load=None, rtt=None, jitter=None,
                                   min_rtt=None, loss=0.0))
        self.by_key = {link_key(l["a"], l["b"]): l for l in self.links}
        self.adj = {n["id"]: [] for n in nodes}
        for l in self.links:
            self.adj[l["a"]].append(l)
            self.adj[l["b"]].append(l)
        self.services = services
        self.version = 1
        self.timeline = []
        self.listeners = set()
        self.dirty = set()
        self.measure(initial=True)

    # --- routing (a plain Dijkstra over the links in force) ---

    def cost(self, l):
        if l["state"] == "down":
            return None
        c = l["expected_ms"] if l["rtt"] is None else max(l["expected_ms"], l["rtt"] / 2)
        return c + (HELD_DOWN_PENALTY_MS if l["state"] == "held-down" else 0.0)

    def shortest(self, src, dst, avoid=None):
        dist, prev, heap = {src: 0.0}, {}, [(0.0, src)]
        while heap:
            d, at = heapq.heappop(heap)
            if at == dst:
                break
            if d > dist.get(at, math.inf):
                continue
            for l in self.adj[at]:
                if l is avoid:
                    continue
                c = self.cost(l)
                if c is None:
                    continue
                nxt = l["b"] if l["a"] == at else l["a"]
                if d + c < dist.get(nxt, math.inf):
                    dist[nxt], prev[nxt] = d + c, at
                    heapq.heappush(heap, (d + c, nxt))
        if dst not in dist:
            return None
        path = [dst]
        while path[-1] != src:
            path.append(prev[path[-1]])
        return path[::-1]

    def hops(self, path):
        return [self.by_key[link_key(x, y)] for x, y in zip(path, path[1:])]

    def route(self, src, dst):
        path = self.shortest(src, dst) or [src]
        reaches = path[-1] == dst
        repair = None
        if reaches and len(path) > 1:
            repair = self.shortest(src, dst, avoid=self.hops(path)[0])
        hops = self.hops(path) if reaches else []
        measured = None
        if reaches and all(h["rtt"] is not None for h in hops):
            measured = round(sum(h["rtt"] / 2 for h in hops), 3)
        return {
            "from": src,
            "to": dst,
            "version": self.version,
            "path": path,
            "cost_ms": round(sum(self.cost(h) for h in hops), 3) if reaches else None,
            "backup_next_hop": repair[1] if repair else None,
            "repair_path": repair,
            "expected_ms": round(sum(h["expected_ms"] for h in hops), 3) if reaches else None,
            "measured_ms": measured,
        }

    # --- measurements and load ---

    def measure(self, initial=False):
        """New RTT/jitter/loss for some links (all at start), and the load of the demand."""
        now = time.time()
        for l in self.links:
            if not initial and self.rng.random() > 0.25:
                continue
            if l["state"] == "down":
                l["rtt"] = l["jitter"] = None
                l["loss"] = 1.0
                self.dirty.add(id(l))
                continue
            one_way = l["impair_delay"] if l["impair_delay"] is not None else l["expected_ms"]
            jitter = max(0.01 * one_way, l["impair_jitter"]) * (0.7 + 0.6 * self.rng.random())
            rtt = 2 * one_way + 0.1 + jitter * self.rng.random()
            l["rtt"], l["jitter"] = round(rtt, 3), round(jitter, 3)
            l["min_rtt"] = round(min(l["min_rtt"] or rtt, rtt), 3)
            l["loss"] = round(l["impair_loss"] * (0.8 + 0.4 * self.rng.random()), 4)
            self.dirty.add(id(l))
        for l in self.links:
            if l["held_until"] is not None and now >= l["held_until"]:
                l["held_until"] = None
                self.set_state(l, "up", now)
                self.event("link-up", f"{l['a']}–{l['b']} up (hold-down over)", l)
                self.reroute(f"{l['a']}–{l['b']} back in use")
            elif l["state"] in ("up", "degraded"):
                bad = l["loss"] > DEGRADED_LOSS or (l["jitter"] or 0) > DEGRADED_JITTER_MS
                self.set_state(l, "degraded" if bad else "up", now)
        if self.with_load and not initial:  # load is unknown (null) until the first round
            self.place_load()

    def place_load(self):
        loads = {id(l): [0.0, 0.0] for l in self.links}
        for asia, na, classes in DEMAND:
            path = self.shortest(asia, na)
            if not path:
                continue
            wobble = 0.95 + 0.1 * self.rng.random()
            for x, y in zip(path, path[1:]):
                l = self.by_key[link_key(x, y)]
                fwd = 0 if l["a"] == x else 1
                loads[id(l)][fwd] += classes * MBPS_PER_CLASS[0] * wobble
                loads[id(l)][1 - fwd] += classes * MBPS_PER_CLASS[1] * wobble
        for l in self.links:
            new = loads[id(l)]  # a down link carries nothing: 0, not unknown
            if new != l["load"]:
                l["load"] = new
                self.dirty.add(id(l))

    # --- state changes, events ---

    def set_state(self, l, state, now):
        if l["state"] != state:
            l["state"], l["changed_at"] = state, now
            self.dirty.add(id(l))

    def event(self, kind, text, l=None):
        ev = {"at_s": round(time.time(), 3), "kind": kind, "text": text,
              "a": l["a"] if l else None, "b": l["b"] if l else None}
        self.timeline = (self.timeline + [ev])[-50:]
        self.broadcast("timeline", ev)

    def reroute(self, why):
        self.version += 1
        self.event("reroute", f"routes v{self.version}: {why}")
        if self.with_load:
            self.place_load()

    def find(self, a, b):
        l = self.by_key.get(link_key(a, b))
        if l is None:
            raise LookupError(f"no link between `{a}` and `{b}`")
        return l

    def cut(self, a, b):
        l = self.find(a, b)
        now = time.time()
        l["cut"], l["held_until"] = True, None
        self.event("cut", f"cut {l['a']}–{l['b']} (mock)", l)
        self.set_state(l, "down", now)
        l["rtt"] = l["jitter"] = None
        l["loss"] = 1.0
        if l["load"] is not None:
            l["load"] = [0.0, 0.0]
        self.event("link-down", f"{l['a']}–{l['b']} down", l)
        self.reroute(f"moved off {l['a']}–{l['b']}")
        self.flush()

    def restore(self, a, b):
        l = self.find(a, b)
        l["cut"] = False
        self.event("restore", f"restore {l['a']}–{l['b']} (mock)", l)
        if l["state"] == "down":
            l["held_until"] = time.time() + HOLD_DOWN_S
            self.set_state(l, "held-down", time.time())
            l["loss"] = 0.0
        self.flush()

    def impair(self, a, b, delay_ms=None, jitter_ms=0.0, loss=0.0):
        l = self.find(a, b)
        l["impair_delay"], l["impair_jitter"], l["impair_loss"] = delay_ms, jitter_ms, loss
        delay = "" if delay_ms is None else f", delay {delay_ms:g} ms"
        self.event("impair", f"impair {l['a']}–{l['b']}: loss {loss * 100:.1f}%, "
                   f"jitter {jitter_ms:g} ms{delay} (mock)", l)
        self.measure_link(l)
        self.flush()

    def measure_link(self, l):
        if l["state"] == "down":
            return
        one_way = l["impair_delay"] if l["impair_delay"] is not None else l["expected_ms"]
        jitter = max(0.01 * one_way, l["impair_jitter"])
        l["rtt"], l["jitter"] = round(2 * one_way + 0.1, 3), round(jitter, 3)
        l["loss"] = round(l["impair_loss"], 4)
        bad = l["loss"] > DEGRADED_LOSS or l["jitter"] > DEGRADED_JITTER_MS
        if l["state"] in ("up", "degraded"):
            self.set_state(l, "degraded" if bad else "up", time.time())
        self.dirty.add(id(l))

    # --- JSON shapes (docs/map.md) ---

    def node_json(self, n):
        out = {k: n[k] for k in ("id", "city", "country", "region", "lat", "lon")}
        if n.get("disconnected"):
            return dict(out, connected=False, connected_for_s=None, table_version_applied=None)
        up_for = time.time() - n.get("since", self.started)
        return dict(out, connected=True, connected_for_s=round(up_for, 3),
                    table_version_applied=self.version)

    def set_connected(self, node_id, connected):
        n = next((n for n in self.nodes if n["id"] == node_id), None)
        if n is None:
            raise LookupError(f"no node `{node_id}`")
        if connected:
            n.pop("disconnected", None)
            n["since"] = time.time()
        else:
            n["disconnected"] = True
        self.broadcast("nodes", [self.node_json(n)])

    def link_json(self, l, now=None):
        now = now or time.time()
        load = l["load"]
        cap = l["capacity_mbps"]
        return {
            "a": l["a"], "b": l["b"], "kind": l["kind"], "name": l["name"],
            "state": l["state"],
            "since_s": None if l["changed_at"] is None else round(now - l["changed_at"], 3),
            "rtt_ms": l["rtt"], "min_rtt_ms": l["min_rtt"], "jitter_ms": l["jitter"],
            "loss": l["loss"], "stale": l["state"] == "down",
            "expected_ms": l["expected_ms"],
            "cost_in_force_ms": None if l["state"] in ("down", "held-down")
            else round(self.cost(l), 3),
            "capacity_mbps": cap,
            "load_ab_mbps": None if load is None else round(load[0], 1),
            "load_ba_mbps": None if load is None else round(load[1], 1),
            "utilisation_ab": None if load is None else round(load[0] / cap, 4),
            "utilisation_ba": None if load is None else round(load[1] / cap, 4),
        }

    def services_json(self):
        out = []
        for s in self.services:
            r = self.route(s["ingress"], s["egress"])
            m = r["measured_ms"]
            udp = s["protocol"] == "udp"
            out.append(dict(s, path=r["path"],
                            one_way_ms_p50=None if m is None else round(m + 0.4, 2),
                            one_way_ms_p99=None if m is None else round(m + 2.5, 2),
                            loss=(0.0 if m is not None else None) if udp else None,
                            reordered=(0.0 if m is not None else None) if udp else None))
        return out

    def snapshot(self):
        now = time.time()
        return {"nodes": [self.node_json(n) for n in self.nodes],
                "links": [self.link_json(l, now) for l in self.links],
                "timeline": list(self.timeline)}

    # --- the stream ---

    def broadcast(self, event, data):
        frame = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for q in list(self.listeners):
            try:
                q.put_nowait(frame)
            except queue.Full:  # a client that does not read is dropped, never buffered
                self.listeners.discard(q)
                q.queue.clear()
                q.put_nowait(None)

    def flush(self):
        if not self.dirty:
            return
        now = time.time()
        changed = [self.link_json(l, now) for l in self.links if id(l) in self.dirty]
        self.dirty.clear()
        self.broadcast("links", changed)

    def drop_streams(self):
        for q in list(self.listeners):
            self.listeners.discard(q)
            q.put_nowait(None)


def ticker(f, stop):
    """Measurements once a second, flushes of what changed every 250 ms."""
    n = 0
    while not stop.wait(FLUSH_S):
        with f.lock:
            n += 1
            if n % 4 == 0:
                f.measure()
            f.flush()


class Handler(BaseHTTPRequestHandler):
    server_version = "overlay-mock/1"
    fleet = None  # set by main

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def send_body(self, status, body, ctype="application/json", extra=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, value, status=200):
        self.send_body(status, json.dumps(value, indent=2) + "\n")

    def send_error_json(self, status, message):
        self.send_body(status, json.dumps({"error": message}) + "\n")

    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        p = url.path
        f = self.fleet
        if p in ("/", "/map"):
            if p == "/":
                return self.send_body(302, "", "text/plain", [("Location", "/map")])
            return self.asset("index.html")
        if p.startswith("/map/"):
            return self.asset(p[len("/map/"):] or "index.html")
        if p == "/healthz":
            return self.send_body(200, "ok\n", "text/plain")
        if p == "/api/v1/stream":
            return self.stream()
        with f.lock:
            if p == "/api/v1/nodes":
                return self.send_json([f.node_json(n) for n in f.nodes])
            if p == "/api/v1/links":
                return self.send_json([f.link_json(l) for l in f.links])
            if p == "/api/v1/services":
                return self.send_json(f.services_json())
            if p == "/api/v1/routes":
                src, dst = q.get("from"), q.get("to")
                if not src or not dst:
                    return self.send_error_json(
                        400, "give both `from` and `to`, e.g. /api/v1/routes?from=sha&to=lax")
                for n in (src, dst):
                    if n not in f.node_ids:
                        return self.send_error_json(400, f"unknown node `{n}`")
                return self.send_json(f.route(src, dst))
        return self.send_error_json(404, f"no such endpoint: {p}")

    def asset(self, name):
        # Only plain files directly in controller/map/ (not dev/, no `..`).
        if "/" in name or name.startswith(".") or not os.path.isfile(os.path.join(ASSETS, name)):
            return self.send_error_json(404, f"no such endpoint: {self.path}")
        with open(os.path.join(ASSETS, name), "rb") as fh:
            body = fh.read()
        ctype = CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        self.send_body(200, body, ctype)

    def stream(self):
        f = self.fleet
        q = queue.Queue(maxsize=64)
        with f.lock:
            first = "retry: 2000\n\nevent: snapshot\ndata: " + json.dumps(
                f.snapshot(), separators=(",", ":")) + "\n\n"
            f.listeners.add(q)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self.wfile.write(first.encode())
            self.wfile.flush()
            while True:
                try:
                    frame = q.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    frame = ": keep-alive\n\n"
                if frame is None:
                    break
                self.wfile.write(frame.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with f.lock:
                f.listeners.discard(q)
            self.close_connection = True

    def do_POST(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 65536)) if length else b""
        f = self.fleet
        try:
            with f.lock:
                if url.path == "/mock/drop-streams":
                    f.drop_streams()
                    return self.send_json({"ok": True})
                if url.path == "/mock/node":
                    f.set_connected(q.get("id", ""), q.get("connected", "true") != "false")
                    return self.send_json({"ok": True})
                if len(parts) == 2 and parts[0] == "mock":
                    action, a, b = parts[1], q.get("a"), q.get("b")
                    params = q
                elif len(parts) == 7 and parts[:4] == ["api", "v1", "lab", "links"]:
                    a, b, action = parts[4], parts[5], parts[6]
                    params = json.loads(body) if body else {}
                else:
                    return self.send_error_json(404, f"no such endpoint: {url.path}")
                if not a or not b:
                    return self.send_error_json(400, "give both `a` and `b`, e.g. ?a=sha&b=pdx")
                if action == "cut":
                    f.cut(a, b)
                elif action == "restore":
                    f.restore(a, b)
                elif action == "impair":
                    delay = params.get("delay_ms")
                    f.impair(a, b, None if delay is None else float(delay),
                             float(params.get("jitter_ms", 0)), float(params.get("loss", 0)))
                else:
                    return self.send_error_json(
                        404, f"unknown action `{action}`; use cut, restore or impair")
                return self.send_json({"ok": True})
        except LookupError as e:
            return self.send_error_json(404, str(e.args[0]))
        except (ValueError, TypeError) as e:
            return self.send_error_json(400, f"bad parameters: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    ap.add_argument("--topology", default=WORLD)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-load", action="store_true", help="leave load unmeasured (null)")
    ap.add_argument("--verbose", action="store_true", help="log each request")
    args = ap.parse_args()
    Handler.fleet = Fleet(args.topology, args.seed, not args.no_load)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    httpd.verbose = args.verbose
    stop = threading.Event()
    threading.Thread(target=ticker, args=(Handler.fleet, stop), daemon=True).start()
    host, port = httpd.server_address[:2]
    print(f"mock: serving http://{host}:{port}/map "
          f"({len(Handler.fleet.nodes)} nodes, {len(Handler.fleet.links)} links)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        Handler.fleet.drop_streams()
        httpd.server_close()


if __name__ == "__main__":
    main()
