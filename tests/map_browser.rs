//! The live map in a real browser: `overlay lab` on a small fleet serves the
//! page and its API; Chromium, driven through chromedriver over the W3C
//! WebDriver HTTP protocol (plain HTTP and JSON), checks what a person would:
//! every relay and link drawn, the path of a chosen pair with its repair path,
//! a cut link turning `down` within a second and the path moving off it, the
//! timeline and the link panel, a degraded link, a click on a link, a restore,
//! and no errors in the page's console (the page runs under the server's
//! `Content-Security-Policy`). It saves a screenshot under the target dir.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test is
//! skipped with a message, unless `OVERLAY_REQUIRE_BROWSER=1` (CI) makes it
//! fail. A port of `controller/map/dev/browser_test.py` (which runs against
//! the mock); the mock's dropped-stream check has no lab equivalent.

mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROME_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];
const WIDTH: i64 = 1600;
const HEIGHT: i64 = 1000;

/// HTTP with JSON, every call bounded in time.
struct Http(ureq::Agent);

impl Http {
    fn new() -> Http {
        Http(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into(),
        )
    }

    /// (status, JSON body or Null).
    fn call(&self, method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let r = match (method, body) {
            ("GET", _) => self.0.get(url).call(),
            ("DELETE", _) => self.0.delete(url).call(),
            ("POST", b) => self
                .0
                .post(url)
                .header("Content-Type", "application/json")
                .send(b.map_or_else(|| "{}".to_string(), Value::to_string)),
            (m, _) => return Err(format!("unsupported method {m}")),
        };
        let mut r = r.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = r.status().as_u16();
        let text = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| format!("{method} {url}: not JSON ({e}): {text:.300}"))?
        };
        Ok((status, value))
    }

    /// The JSON of a 200 answer; panics on anything else.
    fn ok(&self, method: &str, url: &str, body: Option<&Value>) -> Value {
        match self.call(method, url, body) {
            Ok((200, v)) => v,
            Ok((status, v)) => panic!("{method} {url}: HTTP {status}: {v}"),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Polls `f` every 20 ms until it gives `Some`, for at most `timeout`:
/// (value, time taken).
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, t0.elapsed());
        }
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `overlay lab` on `topology` with its API on a free port: the process and
/// the API's base URL (read from the line that gives the map's URL).
fn start_lab(topology: &Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_overlay"))
        .args(["lab", "--topology"])
        .arg(topology)
        .args(["--duration", "10m", "--classes", "2", "--scenario", "none"])
        .args(["--api", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("overlay lab starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let lab = Killed(child);
    let (tx, rx) = mpsc::channel();
    // Forwards the lab's own lines (not its progress view) to the test's log.
    std::thread::spawn(move || {
        let (mut buf, mut line) = ([0u8; 4096], Vec::new());
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &c in &buf[..n] {
                if c != b'\n' && c != b'\r' {
                    line.push(c);
                    continue;
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if text.starts_with("lab:") {
                    eprintln!("{text}");
                }
                if let Some(url) = text.strip_prefix("lab: live map on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the lab prints its map's URL within 90 s");
    let api = url
        .strip_suffix("/map")
        .unwrap_or_else(|| panic!("a map URL ends in /map: {url}"))
        .to_string();
    (lab, api)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// chromedriver on a free port, ready: the process and its base URL.
fn start_chromedriver(http: &Http) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_for(
        "chromedriver ready",
        Duration::from_secs(20),
        || match http.call("GET", &format!("{base}/status"), None) {
            Ok((200, v)) if v["value"]["ready"] == true => Some(()),
            _ => None,
        },
    );
    (Killed(child), base)
}

/// One browser session: the WebDriver calls the test makes.
struct Browser<'a> {
    http: &'a Http,
    session: String,
}

impl<'a> Browser<'a> {
    fn start(http: &'a Http, driver: &str, profile: &Path) -> Browser<'a> {
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={WIDTH},{HEIGHT}"));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let v = http.ok("POST", &format!("{driver}/session"), Some(&caps));
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"));
        let b = Browser {
            http,
            session: format!("{driver}/session/{id}"),
        };
        // Size the window so that the page itself (the viewport) is WIDTH x HEIGHT.
        b.cmd(
            "POST",
            "/window/rect",
            json!({"width": WIDTH, "height": HEIGHT}),
        );
        let inner = b.script("return [window.innerWidth, window.innerHeight];", json!([]));
        let (iw, ih) = (
            inner[0].as_i64().unwrap_or(WIDTH),
            inner[1].as_i64().unwrap_or(HEIGHT),
        );
        b.cmd(
            "POST",
            "/window/rect",
            json!({"width": 2 * WIDTH - iw, "height": 2 * HEIGHT - ih}),
        );
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let body = (method == "POST").then_some(&body);
        self.http.ok(method, &url, body)["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.cmd(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        );
        found
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn first(&self, css: &str) -> String {
        self.find_all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("nothing on the page matches {css}"))
    }

    fn attr(&self, element: &str, name: &str) -> Option<String> {
        self.cmd(
            "GET",
            &format!("/element/{element}/attribute/{name}"),
            Value::Null,
        )
        .as_str()
        .map(String::from)
    }

    fn text(&self, element: &str) -> String {
        self.cmd("GET", &format!("/element/{element}/text"), Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), json!({}));
    }

    fn script(&self, js: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": js, "args": args}))
    }

    fn pointer(&self, actions: Value) {
        self.cmd(
            "POST",
            "/actions",
            json!({"actions": [{"type": "pointer", "id": "mouse",
                "parameters": {"pointerType": "mouse"}, "actions": actions}]}),
        );
    }

    /// A person's click at viewport pixel (x, y): move, press, release.
    fn click_at(&self, x: f64, y: f64) {
        self.pointer(json!([
            {"type": "pointerMove", "duration": 0, "x": x as i64, "y": y as i64, "origin": "viewport"},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerUp", "button": 0},
        ]));
        self.cmd("DELETE", "/actions", Value::Null);
    }

    fn move_to(&self, x: i64, y: i64) {
        self.pointer(
            json!([{"type": "pointerMove", "duration": 0, "x": x, "y": y, "origin": "viewport"}]),
        );
    }

    /// The page's console errors (chromedriver's log endpoint, not W3C).
    fn console_errors(&self) -> Vec<String> {
        let log = self.cmd("POST", "/se/log", json!({"type": "browser"}));
        log.as_array()
            .map(|v| {
                v.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn screenshot(&self, path: &Path) {
        let png = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64_decode(png.as_str().expect("a base64 PNG"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).expect("screenshot written");
    }

    /// The path highlighted (or the repair path), hop by hop, read in one
    /// call so that a redraw cannot leave stale references.
    fn hops(&self, attr: &str) -> Vec<(String, String)> {
        let v = self.script(
            "return [...document.querySelectorAll(`[${arguments[0]}]`)].map(e => [e.dataset.from, e.dataset.to]);",
            json!([attr]),
        );
        v.as_array()
            .map(|hops| {
                hops.iter()
                    .map(|h| {
                        let s = |i: usize| h[i].as_str().unwrap_or("?").to_string();
                        (s(0), s(1))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn state_of(&self, link: &str) -> Option<String> {
        let e = self.find_all(&format!("[data-link=\"{link}\"]"));
        self.attr(e.first()?, "data-state")
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self.http.call("DELETE", &self.session, None);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn pairs(path: &[String]) -> Vec<(String, String)> {
    path.windows(2)
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_live_map_shows_the_fleet_a_path_and_a_cut_in_a_real_browser() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        let msg = format!(
            "{CHROMEDRIVER} or {CHROMIUM} is missing (Debian: apt-get install chromium chromium-driver)"
        );
        assert!(
            std::env::var("OVERLAY_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "OVERLAY_REQUIRE_BROWSER=1 and {msg}"
        );
        eprintln!("skipped: the live map's browser test: {msg}");
        return;
    }
    let _one_at_a_time = support::one_fleet_at_a_time();
    let started = Instant::now();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab-triangle.yaml");
    let topo = topology::load(&file).expect("the fixture");
    let http = Http::new();
    let (_lab, api) = start_lab(&file);
    let (_driver, driver) = start_chromedriver(&http);
    let profile = tempfile::tempdir().expect("a fresh profile dir");
    let b = Browser::start(&http, &driver, profile.path());
    eprintln!("browser up after {:.1} s", started.elapsed().as_secs_f64());
    b.go(&format!("{api}/map"));

    // 1. The page connects to the stream and says so.
    wait_for("the badge to read live", Duration::from_secs(15), || {
        (!b.find_all("[data-live=\"live\"]").is_empty()).then_some(())
    });

    // 2. Every relay and every link of the topology is drawn, the named lines named.
    assert_eq!(
        b.find_all("circle[data-node]").len(),
        topo.nodes.len(),
        "relays drawn"
    );
    assert_eq!(
        b.find_all("path[data-link]").len(),
        topo.links.len(),
        "links drawn"
    );
    let named = topo
        .links
        .iter()
        .filter(|l| l.kind == topology::LinkKind::Undersea && l.name.is_some())
        .count();
    assert_eq!(
        b.find_all("[data-line-name]").len(),
        named,
        "undersea lines named"
    );
    wait_for("the land outline", Duration::from_secs(5), || {
        (!b.find_all("path.land").is_empty()).then_some(())
    });
    let summary = b.first("[data-summary]");
    assert_eq!(
        b.attr(&summary, "data-nodes"),
        Some(topo.nodes.len().to_string())
    );
    assert_eq!(b.attr(&summary, "data-down").as_deref(), Some("0"));

    // 3. A path for a chosen pair, hop by hop, as the API has it, and its repair path.
    //    (Routes may still settle while the relays' first measurements arrive.)
    let (want, _) = wait_for("tyo → lax over sea", Duration::from_secs(30), || {
        let r = http.ok("GET", &format!("{api}/api/v1/routes?from=tyo&to=lax"), None);
        (strings(&r["path"]) == ["tyo", "sea", "lax"]).then_some(r)
    });
    let path = strings(&want["path"]);
    b.click(&b.first("select[data-pick=\"from\"] option[value=\"tyo\"]"));
    b.click(&b.first("select[data-pick=\"to\"] option[value=\"lax\"]"));
    let (shown, _) = wait_for("the path drawn", Duration::from_secs(3), || {
        let h = b.hops("data-path-hop");
        (!h.is_empty()).then_some(h)
    });
    assert_eq!(shown, pairs(&path), "path tyo → lax highlighted hop by hop");
    let repair = strings(&want["repair_path"]);
    assert_eq!(
        repair,
        ["tyo", "lax"],
        "tyo's backup toward lax is the direct line"
    );
    wait_for("the repair path drawn", Duration::from_secs(3), || {
        (b.hops("data-repair-hop") == pairs(&repair)).then_some(())
    });
    let panel = b.text(&b.first("[data-panel=\"path\"]"));
    assert!(
        panel.contains("30"),
        "the path's expected 30 ms shown: {panel}"
    );

    // 4. Cut the undersea line the path crosses: it turns down within a second
    //    (detection ~150 ms, then the stream's next flush), the path moves off it,
    //    the timeline lists it.
    let line = "tyo-sea";
    let before = b.state_of(line);
    assert!(
        matches!(before.as_deref(), Some("up" | "degraded")),
        "{line} in use before the cut: {before:?}"
    );
    let t0 = Instant::now();
    http.ok("POST", &format!("{api}/api/v1/lab/links/tyo/sea/cut"), None);
    wait_for("the cut link shown down", Duration::from_secs(5), || {
        (b.state_of(line).as_deref() == Some("down")).then_some(())
    });
    let took = t0.elapsed();
    eprintln!("{line} shown down {} ms after the cut", took.as_millis());
    assert!(
        took < Duration::from_secs(1),
        "{line} shown down {took:?} after the cut"
    );
    let (moved, _) = wait_for("the path off the cut line", Duration::from_secs(3), || {
        let h = b.hops("data-path-hop");
        let on_it = h
            .iter()
            .any(|(a, z)| (a == "tyo" && z == "sea") || (a == "sea" && z == "tyo"));
        (!h.is_empty() && !on_it).then_some(h)
    });
    assert_eq!(
        moved,
        [("tyo".to_string(), "lax".to_string())],
        "onto the direct line"
    );
    let (entry, _) = wait_for("the timeline's link-down", Duration::from_secs(3), || {
        b.find_all("[data-timeline] li[data-event=\"link-down\"]")
            .into_iter()
            .next()
    });
    let text = b.text(&entry);
    assert!(text.contains("tyo") && text.contains("sea"), "{text}");
    assert!(
        !b.find_all("[data-timeline] li[data-event=\"cut\"]")
            .is_empty(),
        "the cut by hand is on the timeline"
    );
    assert_eq!(b.attr(&summary, "data-down").as_deref(), Some("1"));

    // 5. Clicking that timeline entry shows the link's figures.
    b.click(&entry);
    let panel = b.text(&b.first("[data-panel=\"link\"]"));
    assert!(
        panel.to_uppercase().contains("DOWN")
            && panel.contains("RTT")
            && panel.contains("capacity"),
        "the link panel shows the cut line: {panel}"
    );

    // 6. Jitter over 10 ms makes a link degraded. ±16 ms each way (uniform) on
    //    15 ms puts the probes' measured jitter near 15 ms, clear of the 10 ms
    //    mark (±12 on 12 put it near 11, and under load it took over 15 s to
    //    cross); the loss timeout follows the RTT's variation, so the link
    //    stays up (should a probe pair time out at the step, the link is back
    //    and degraded a second later).
    http.ok(
        "POST",
        &format!("{api}/api/v1/lab/links/sea/lax/impair"),
        Some(&json!({"delay_ms": 15, "jitter_ms": 16, "loss": 0.0})),
    );
    // Each state the map shows on the way, for a failure to tell.
    let mut shown = None;
    let (_, t) = wait_for("sea-lax shown degraded", Duration::from_secs(15), || {
        let now = b.state_of("sea-lax");
        if now != shown {
            eprintln!("sea-lax shown {now:?}");
            shown = now.clone();
        }
        (now.as_deref() == Some("degraded")).then_some(())
    });
    eprintln!(
        "sea-lax shown degraded {} ms after the impairment",
        t.as_millis()
    );

    // 7. A click on a link on the map (the midpoint of the path's first hop)
    //    shows its figures.
    let (a, z) = b.hops("data-path-hop")[0].clone();
    let target = [format!("{a}-{z}"), format!("{z}-{a}")]
        .into_iter()
        .find(|k| !b.find_all(&format!("[data-link=\"{k}\"]")).is_empty())
        .expect("the hop's link is drawn");
    let at = b.script(
        "const p = document.querySelector(`[data-link='${arguments[0]}']`);\
         const pt = p.getPointAtLength(p.getTotalLength() / 2), m = p.getScreenCTM();\
         return [pt.x * m.a + m.e, pt.y * m.d + m.f];",
        json!([target]),
    );
    b.click_at(at[0].as_f64().unwrap_or(0.0), at[1].as_f64().unwrap_or(0.0));
    b.move_to(40, 140);
    let panel = b.text(&b.first("[data-panel=\"link\"]"));
    assert!(
        panel.contains(&target.replace('-', " – "))
            && panel.contains("capacity")
            && panel.contains(" → "),
        "a click on {target} shows its RTT, loss, load each way, capacity: {panel}"
    );

    // 8. Restored, the line comes back held down, and the timeline says so.
    http.ok(
        "POST",
        &format!("{api}/api/v1/lab/links/tyo/sea/restore"),
        None,
    );
    let (state, t) = wait_for("the restored line back", Duration::from_secs(15), || {
        b.state_of(line).filter(|s| s != "down")
    });
    eprintln!(
        "{line} shown {state} {} ms after the restore",
        t.as_millis()
    );
    assert_eq!(state, "held-down", "routes do not trust it yet");
    wait_for("the timeline's link-up", Duration::from_secs(3), || {
        (!b.find_all("[data-timeline] li[data-event=\"link-up\"]")
            .is_empty())
        .then_some(())
    });

    // 9. No errors in the console (the page runs under its CSP), then a screenshot.
    let errors = b.console_errors();
    assert!(
        errors.is_empty(),
        "errors in the page's console: {errors:#?}"
    );
    let shot: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("map-browser.png");
    b.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());
    eprintln!(
        "the browser test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
