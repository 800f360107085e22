#!/usr/bin/env python3
"""Browser test of the live map against the mock controller, through chromedriver's
W3C WebDriver HTTP protocol (plain HTTP + JSON, Python stdlib only, no selenium).

    python3 controller/map/dev/browser_test.py [--screenshot map.png] [--keep]

Needs Debian's `chromium` and `chromium-driver`. It starts the mock server and
chromedriver on free loopback ports, checks what a person would check, saves a
screenshot, and ends with a line `N passed, N failed` (exit 1 if any failed).
Every WebDriver call it makes is in the `WebDriver` class: that is the list to port.
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD = os.path.join(HERE, "..", "..", "..", "topology", "world.yaml")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
CHROME_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def http(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        raise RuntimeError(f"{method} {url}: HTTP {e.code}: {raw[:300]!r}") from None
    return json.loads(raw) if raw else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """The handful of W3C WebDriver endpoints the test uses."""

    def __init__(self, base, user_data_dir, width, height):
        self.base = base
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": shutil.which("chromium") or "/usr/bin/chromium",
                "args": CHROME_ARGS + [f"--user-data-dir={user_data_dir}",
                                       f"--window-size={width},{height}"],
            },
        }}}
        self.sid = http("POST", f"{base}/session", caps)["value"]["sessionId"]
        # Size the window so that the page itself (the viewport) is width x height.
        self.cmd("POST", "/window/rect", {"width": width, "height": height})
        iw, ih = self.script("return [window.innerWidth, window.innerHeight];")
        self.cmd("POST", "/window/rect", {"width": 2 * width - iw, "height": 2 * height - ih})

    def cmd(self, method, path, body=None):
        return http(method, f"{self.base}/session/{self.sid}{path}", body)["value"]

    def go(self, url):
        self.cmd("POST", "/url", {"url": url})

    def find_all(self, css):
        return [e[ELEMENT] for e in self.cmd("POST", "/elements", {"using": "css selector", "value": css})]

    def attr(self, eid, name):
        return self.cmd("GET", f"/element/{eid}/attribute/{name}")

    def text(self, eid):
        return self.cmd("GET", f"/element/{eid}/text")

    def click(self, eid):
        self.cmd("POST", f"/element/{eid}/click", {})

    def script(self, js, *args):
        return self.cmd("POST", "/execute/sync", {"script": js, "args": list(args)})

    def click_at(self, x, y):
        """A person's click at viewport pixel (x, y): move, press, release."""
        self.cmd("POST", "/actions", {"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "x": int(x), "y": int(y), "origin": "viewport"},
                        {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})
        self.cmd("DELETE", "/actions")

    def move_to(self, x, y):
        self.cmd("POST", "/actions", {"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "x": int(x), "y": int(y), "origin": "viewport"}]}]})

    def console_errors(self):
        """The page's console errors (chromedriver's log endpoint, not W3C)."""
        return [e["message"] for e in self.cmd("POST", "/se/log", {"type": "browser"}) if e["level"] == "SEVERE"]

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def quit(self):
        http("DELETE", f"{self.base}/session/{self.sid}")


def wait_for(what, fn, timeout):
    """Polls `fn` until it returns something truthy; returns (value, seconds taken)."""
    t0 = time.monotonic()
    while True:
        v = fn()
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
            print(f"ok   {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {what}", flush=True)
        return ok


def world_counts():
    """Node and link counts of world.yaml, read independently of the mock's reader."""
    text = open(WORLD, encoding="utf-8").read()
    section = lambda name: re.search(rf"^{name}:\n(.*?)(?=^\S|\Z)", text, re.M | re.S).group(1)
    nodes = len(re.findall(r"^\s*- \{ ?id: ", section("nodes"), re.M))
    links = len(re.findall(r"^\s*- \{ ?between: ", section("links"), re.M))
    return nodes, links


def path_hops(wd, attr="data-path-hop"):
    """The highlighted hops as [(from, to)], read in one call (the page may redraw them)."""
    return [tuple(h) for h in wd.script(
        "return [...document.querySelectorAll(`[${arguments[0]}]`)]"
        ".map(e => [e.dataset.from, e.dataset.to]);", attr)]


def start_mock():
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "mock_server.py"), "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise RuntimeError(f"mock server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def start_chromedriver():
    port = free_port()
    exe = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    proc = subprocess.Popen([exe, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for("chromedriver", lambda: _ready(base), 15)
    return proc, base


def _ready(base):
    try:
        return http("GET", f"{base}/status", timeout=2)["value"]["ready"]
    except (OSError, RuntimeError):
        return False


def run(c, wd, api, screenshot):
    n_nodes, n_links = world_counts()
    wd.go(f"{api}/map")

    # 1. The page connects to the stream and says so.
    wait_for("data-live=live", lambda: wd.find_all('[data-live="live"]'), 10)
    c.check(True, "the live indicator reads `live`")

    # 2. Every relay and every link of world.yaml is drawn.
    nodes, links = wd.find_all("circle[data-node]"), wd.find_all("[data-link]")
    c.check(len(nodes) == n_nodes == 55, f"{len(nodes)} relays drawn (world.yaml: {n_nodes})")
    c.check(len(links) == n_links, f"{len(links)} links drawn (world.yaml: {n_links})")
    wait_for("land outline", lambda: wd.find_all("path.land"), 5)
    lines = wd.find_all("[data-line-name]")
    c.check(len(lines) == 5, f"{len(lines)} undersea lines named on the map")

    # 3. A path for a chosen pair, hop by hop, matching the API's route.
    wd.click(wd.find_all('select[data-pick="from"] option[value="sha"]')[0])
    wd.click(wd.find_all('select[data-pick="to"] option[value="lax"]')[0])
    want = http("GET", f"{api}/api/v1/routes?from=sha&to=lax")
    shown, _ = wait_for("path hops", lambda: path_hops(wd), 3)
    c.check(shown == list(zip(want["path"], want["path"][1:])),
            f"path sha → lax highlighted hop by hop: {' '.join(want['path'])}")
    repair = want["repair_path"] or []
    c.check(path_hops(wd, "data-repair-hop") == list(zip(repair, repair[1:])),
            f"repair path dashed: {' '.join(want['repair_path'] or ['none'])}")

    # 4. Cut the line the path crosses the Pacific on: the link turns down within 1 s
    #    and the highlight moves off it.
    kinds = {(l["a"], l["b"]): l["kind"] for l in http("GET", f"{api}/api/v1/links")}
    pacific = next(((a, b) for a, b in zip(want["path"], want["path"][1:])
                    if kinds.get((a, b), kinds.get((b, a))) == "undersea"), None)
    a, b = pacific if (pacific in kinds) else (pacific[1], pacific[0])
    sel = f'[data-link="{a}-{b}"]'
    c.check(wd.attr(wd.find_all(sel)[0], "data-state") == "up", f"{a}-{b} is up before the cut")
    t0 = time.monotonic()
    http("POST", f"{api}/api/v1/lab/links/{a}/{b}/cut")
    _, took = wait_for(f"{sel} down", lambda: wd.attr(wd.find_all(sel)[0], "data-state") == "down", 5)
    took = time.monotonic() - t0
    c.check(took < 1.0, f"{a}-{b} shows data-state=down {took * 1000:.0f} ms after the cut (< 1 s)")

    def moved():
        hs = path_hops(wd)
        return hs if hs and {a, b} not in [set(h) for h in hs] else None
    try:
        hs, t = wait_for("path off the cut link", moved, 3)
        c.check(hs[0][0] == "sha" and hs[-1][1] == "lax",
                f"path moved off {a}-{b} in {t * 1000:.0f} ms: {' '.join([hs[0][0]] + [h[1] for h in hs])}")
    except AssertionError as e:
        c.check(False, str(e))
    ev = wd.find_all('[data-timeline] li[data-event="link-down"]')
    c.check(bool(ev) and f"{a}" in wd.text(ev[0]), "the timeline lists the link going down")

    # 5. Clicking that timeline entry opens the link's figures.
    wd.click(ev[0])
    panel = wd.text(wd.find_all('[data-panel="link"]')[0])
    c.check("DOWN" in panel.upper() and "RTT" in panel and "capacity" in panel,
            "the link panel shows the cut link: state, RTT, capacity")

    # 6. Loss over 1 % makes a link degraded.
    http("POST", f"{api}/api/v1/lab/links/hkg/sin/impair", {"delay_ms": 20, "jitter_ms": 2, "loss": 0.03})
    try:
        _, t = wait_for("hkg-sin degraded",
                        lambda: wd.attr(wd.find_all('[data-link="hkg-sin"]')[0], "data-state") == "degraded", 2)
        c.check(True, f"hkg-sin shows data-state=degraded {t * 1000:.0f} ms after 3 % loss")
    except AssertionError as e:
        c.check(False, str(e))

    # 7. A click on a link on the map (at a point of its line) shows its figures.
    a2, b2 = path_hops(wd)[0]  # the first hop of the path shown now
    target = next(s for s in (f"{a2}-{b2}", f"{b2}-{a2}") if wd.find_all(f'[data-link="{s}"]'))
    x, y = wd.script(
        "const p = document.querySelector(`[data-link='${arguments[0]}']`);"
        "const pt = p.getPointAtLength(p.getTotalLength() / 2), m = p.getScreenCTM();"
        "return [pt.x * m.a + m.e, pt.y * m.d + m.f];", target)
    wd.click_at(x, y)
    wd.move_to(40, 140)  # off the line again, so the panel shows what was clicked
    panel = wd.text(wd.find_all('[data-panel="link"]')[0])
    c.check(target.replace("-", " – ") in panel and "capacity" in panel and " → " in panel,
            f"a click on {target} on the map shows RTT, jitter, loss, load each way, capacity")

    errors = wd.console_errors()
    c.check(not errors, f"no errors in the page's console{': ' + '; '.join(errors) if errors else ''}")
    wd.screenshot(screenshot)
    print(f"screenshot: {screenshot}", flush=True)

    # 8. The stream drops: the page says so and reconnects by itself.
    http("POST", f"{api}/mock/drop-streams")
    try:
        wait_for("reconnecting", lambda: wd.find_all('[data-live="reconnecting"]'), 3)
        _, t = wait_for("live again", lambda: wd.find_all('[data-live="live"]'), 10)
        c.check(len(wd.find_all("[data-link]")) == n_links,
                f"after a dropped stream: `reconnecting`, then `live` again {t:.1f} s later")
    except AssertionError as e:
        c.check(False, str(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--screenshot", default=os.path.join(tempfile.gettempdir(), "map-browser-test.png"))
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()
    mock, api = start_mock()
    driver, base = start_chromedriver()
    profile = tempfile.mkdtemp(prefix="map-test-chromium-")
    wd, c = None, Checks()
    try:
        wd = WebDriver(base, profile, args.width, args.height)
        run(c, wd, api, args.screenshot)
    except Exception as e:  # a broken step is a failure with its reason, not a traceback hunt
        c.check(False, f"{type(e).__name__}: {e}")
    finally:
        if wd:
            try:
                wd.quit()
            except (OSError, RuntimeError):
                pass
        driver.terminate()
        mock.terminate()
        driver.wait(10)
        mock.wait(10)
        shutil.rmtree(profile, ignore_errors=True)
    print(f"{c.passed} passed, {c.failed} failed")
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
