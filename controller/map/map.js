// The controller's live map (geometry in geo.js): relays and links on a Pacific-centred world map, kept
// current by the server-sent event stream of docs/map.md. Vanilla JS, no build step,
// nothing fetched from outside the controller. Stable hooks for tests: data-node,
// data-link/data-state, data-path-hop, data-repair-hop, data-live, data-pick, data-panel.
'use strict';
(() => {
  const API = '/api/v1';
  const SVG = 'http://www.w3.org/2000/svg';
  const { decodeTopo, projection, landPath, linkGeom, underseaBows, placeLabels, r1 } = window.OverlayMapGeo;

  // One table of colours, for the lines and for the legend.
  const STATE_COLOUR = { degraded: '#c77dff', 'held-down': '#8c96a8', down: '#ff3b30', unknown: '#5c6470' };
  const UNKNOWN_LOAD = '#5aa9e6';
  const LOAD_RAMP = [[0, '#1fb5a8'], [0.4, '#7ac74f'], [0.7, '#e8d33f'], [0.9, '#f59a23'], [1, '#ff7a1a']];
  const KIND_WIDTH = { undersea: 3.4, terrestrial: 1.9, internet: 1.3 };

  // ---- state (one writer each: the stream handlers, the pickers, the view) ----
  const S = {
    nodes: new Map(),   // id -> node object of the API
    links: new Map(),   // "a|b" -> link object, plus _rx (Date.now() when received)
    services: null,     // [] once loaded; null while the server has no /services
    timeline: [],
    land: null,         // rings of [lon, lat]
    route: null,        // the path shown: route answer (+ service), or {error}
    pick: { from: '', to: '', service: '' },
    pinned: null,       // key of the link kept in the panel
    hover: null,
    view: { k: 1, x: 0, y: 0 },
  };
  const key = (a, b) => `${a}|${b}`;
  const findLink = (a, b) => S.links.get(key(a, b)) || S.links.get(key(b, a));
  const el = {}; // link key -> {line, hit}; node id -> circle (nodes)
  const nodeEl = new Map();
  const labelEl = new Map();
  const $ = (sel) => document.querySelector(sel);

  // ---- small DOM helpers (text only through textContent) ----
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) e.setAttribute(k, v);
    for (const c of kids.flat()) if (c != null) e.append(c);
    return e;
  }
  function s(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
    return e;
  }

  // ---- formatting ----
  const fmtMs = (v) => (v == null ? '—' : `${v.toFixed(v < 10 ? 2 : 1)} ms`);
  const fmtPct = (v) => (v == null ? '—' : `${(v * 100).toFixed(v < 0.1 ? 2 : 1)} %`);
  const fmtRate = (m) => (m == null ? '—' : m >= 1000 ? `${(m / 1000).toFixed(m >= 10000 ? 0 : 1)} Gb/s` : `${m.toFixed(0)} Mb/s`);
  function fmtDur(sec) {
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return `${sec} s`;
    if (sec < 3600) return `${Math.floor(sec / 60)} m ${String(sec % 60).padStart(2, '0')} s`;
    if (sec < 86400) return `${Math.floor(sec / 3600)} h ${String(Math.floor(sec / 60) % 60).padStart(2, '0')} m`;
    return `${Math.floor(sec / 86400)} d ${Math.floor(sec / 3600) % 24} h`;
  }
  const fmtTime = (at) => (at == null ? '' : new Date(at * 1000).toLocaleTimeString([], { hour12: false }));

  // ---- colours ----
  function rampColour(u) {
    u = Math.max(0, Math.min(1, u));
    for (let i = 1; i < LOAD_RAMP.length; i++) {
      const [u1, c1] = LOAD_RAMP[i];
      if (u <= u1) {
        const [u0, c0] = LOAD_RAMP[i - 1];
        const t = (u - u0) / (u1 - u0);
        const mix = (j) => Math.round(parseInt(c0.substr(j, 2), 16) * (1 - t) + parseInt(c1.substr(j, 2), 16) * t);
        return `rgb(${mix(1)},${mix(3)},${mix(5)})`;
      }
    }
    return LOAD_RAMP[LOAD_RAMP.length - 1][1];
  }
  function busier(l) {
    const u = [l.utilisation_ab, l.utilisation_ba].filter((x) => x != null);
    return u.length ? Math.max(...u) : null;
  }
  function linkColour(l) {
    if (STATE_COLOUR[l.state]) return STATE_COLOUR[l.state];
    const u = busier(l);
    return u == null ? UNKNOWN_LOAD : rampColour(u);
  }

  // ---- rendering ----
  const svg = $('#map');
  let layers = null;
  let P = null;

  function render() {
    const w = svg.clientWidth, hgt = svg.clientHeight;
    if (!w || !hgt || !S.nodes.size) return;
    const nodes = [...S.nodes.values()];
    P = projection(nodes, w, hgt, S.view);
    svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
    svg.replaceChildren(); // what the pointer was over is gone: no mouseleave will come
    S.hover = null;
    hideTip();
    const g = (cls) => svg.appendChild(s('g', { class: cls }));
    layers = {
      ocean: g('ocean-layer'), grat: g('grat-layer'), land: g('land-layer'), halo: g('halo-layer'),
      links: g('link-layer'), repair: g('repair-layer'), hits: g('hit-layer'), ends: g('end-layer'),
      nodes: g('node-layer'), labels: g('label-layer'),
    };
    layers.ocean.append(s('rect', { class: 'ocean', x: 0, y: 0, width: w, height: hgt }));

    // Graticule: every 30° of longitude, 15° of latitude.
    let gd = '';
    for (let lon = -180; lon < 180; lon += 30) {
      const x = r1(P.px(P.X(lon)));
      gd += `M${x},${r1(P.py(80))}V${r1(P.py(-80))}`;
    }
    for (let lat = -75; lat <= 75; lat += 15) gd += `M${r1(P.px(-180))},${r1(P.py(lat))}H${r1(P.px(180))}`;
    layers.grat.append(s('path', { class: 'grat', d: gd }));
    if (S.land) layers.land.append(s('path', { class: 'land', d: landPath(S.land, P, w, hgt) }));

    // Links, thin ones first so the undersea lines sit on top.
    const order = { internet: 0, terrestrial: 1, undersea: 2 };
    const links = [...S.links.entries()].sort((a, b) => (order[a[1].kind] ?? 1) - (order[b[1].kind] ?? 1));
    for (const k of Object.keys(el)) delete el[k];
    const geoms = new Map();
    const bows = underseaBows(links, S.nodes, P, S.view.k);
    for (const [k, l] of links) {
      const geo = linkGeom(l, S.nodes, P, bows.get(k));
      if (!geo) continue;
      geoms.set(k, geo);
      const line = s('path', { class: 'link', d: geo.d, 'data-link': `${l.a}-${l.b}`, 'data-a': l.a, 'data-b': l.b, 'data-kind': l.kind });
      const hit = s('path', { class: 'hit', d: geo.d, 'data-hit': `${l.a}-${l.b}` });
      hit.addEventListener('mouseenter', (ev) => { S.hover = k; showLinkTip(ev, k); paintLink(k); renderLinkPanel(); });
      hit.addEventListener('mousemove', (ev) => showLinkTip(ev, k));
      hit.addEventListener('mouseleave', () => { S.hover = null; hideTip(); paintLink(k); renderLinkPanel(); });
      hit.addEventListener('click', (ev) => { ev.stopPropagation(); pin(S.pinned === k ? null : k); });
      layers.links.append(line);
      layers.hits.append(hit);
      el[k] = { line, hit, geo };
      paintLink(k);
    }

    // Nodes and their labels.
    nodeEl.clear();
    labelEl.clear();
    const degree = new Map();
    const hubs = new Set();
    for (const l of S.links.values()) {
      degree.set(l.a, (degree.get(l.a) || 0) + 1);
      degree.set(l.b, (degree.get(l.b) || 0) + 1);
      if (l.kind === 'undersea') { hubs.add(l.a); hubs.add(l.b); }
    }
    const taken = [];
    const labelItems = [];
    for (const n of nodes) {
      const x = P.px(P.X(n.lon)), y = P.py(n.lat);
      const hub = hubs.has(n.id);
      const r = hub ? 4.6 : 3.6;
      const c = s('circle', { class: hub ? 'node hub' : 'node', cx: r1(x), cy: r1(y), r, 'data-node': n.id, 'aria-label': `${n.city} (${n.id})` });
      paintNode(c, n);
      c.addEventListener('mouseenter', (ev) => showNodeTip(ev, n.id));
      c.addEventListener('mousemove', (ev) => showNodeTip(ev, n.id));
      c.addEventListener('mouseleave', hideTip);
      c.addEventListener('click', (ev) => { ev.stopPropagation(); clickNode(n.id); });
      layers.nodes.append(c);
      nodeEl.set(n.id, c);
      taken.push({ x: x - r, y: y - r, w: 2 * r, h: 2 * r });
      labelItems.push({ id: n.id, x, y, text: n.id, hub, prio: (hub ? 100 : 0) + (degree.get(n.id) || 0), cw: 6.6, ch: 12, gap: r + 3 });
    }
    // Undersea line names go first: there are few and they matter most.
    const lineItems = [];
    for (const [k, l] of links) {
      if (l.kind !== 'undersea' || !l.name || !geoms.has(k)) continue;
      const geo = geoms.get(k);
      const spots = [];
      for (const t of [0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73]) {
        const [x, y] = geo.at(t);
        const tw = l.name.length * 8.4 + 2;
        spots.push([x - geo.mid[0] - tw / 2, y - geo.mid[1] - 15, 'middle'], [x - geo.mid[0] - tw / 2, y - geo.mid[1] + 3, 'middle']);
      }
      lineItems.push({ id: l.name, x: geo.mid[0], y: geo.mid[1], text: l.name.toUpperCase(), cw: 8.4, ch: 12, gap: 0, spots });
    }
    placeLabels(lineItems, taken, w, hgt);
    for (const it of lineItems) {
      if (!it.placed) continue;
      const t = s('text', { class: 'line-name', x: r1(it.placed.x), y: r1(it.placed.y), 'text-anchor': it.placed.anchor, 'data-line-name': it.id });
      t.textContent = it.text;
      layers.labels.append(t);
    }
    labelItems.sort((a, b) => b.prio - a.prio);
    placeLabels(labelItems, taken, w, hgt);
    for (const it of labelItems) {
      if (!it.placed) continue;
      const t = s('text', { class: it.hub ? 'label hub' : 'label', x: r1(it.placed.x), y: r1(it.placed.y), 'text-anchor': it.placed.anchor, 'data-label': it.id });
      t.textContent = it.text;
      layers.labels.append(t);
      labelEl.set(it.id, t);
    }
    renderPath();
  }

  function paintNode(c, n) {
    c.setAttribute('data-connected', String(n.connected !== false));
  }

  // Updates one link's look in place (no re-layout): what a `links` event needs.
  function paintLink(k) {
    const e = el[k], l = S.links.get(k);
    if (!e || !l) return;
    e.line.setAttribute('data-state', l.state);
    e.line.setAttribute('stroke', linkColour(l));
    e.line.classList.toggle('hl', S.hover === k || S.pinned === k);
  }

  function renderPath() {
    if (!layers) return;
    layers.halo.replaceChildren();
    layers.repair.replaceChildren();
    layers.ends.replaceChildren();
    for (const c of nodeEl.values()) c.removeAttribute('data-on-path');
    for (const t of labelEl.values()) t.classList.remove('on-path');
    const r = S.route;
    if (!r || r.error) return;
    const hopsOf = (path) => (path || []).slice(1).map((to, i) => [path[i], to]);
    const draw = (layer, path, attr, cls) => {
      hopsOf(path).forEach(([a, b], i) => {
        const l = findLink(a, b);
        const k = l && key(l.a, l.b);
        if (!k || !el[k]) return;
        layer.append(s('path', { class: cls, d: el[k].geo.d, [attr]: i, 'data-from': a, 'data-to': b }));
      });
    };
    const primary = r.service && r.service.path && r.service.path.length ? r.service.path : r.path;
    draw(layers.halo, primary, 'data-path-hop', 'halo');
    draw(layers.repair, r.repair_path, 'data-repair-hop', 'repair');
    for (const id of primary || []) {
      nodeEl.get(id)?.setAttribute('data-on-path', 'true');
      labelEl.get(id)?.classList.add('on-path');
    }
    for (const id of [primary?.[0], primary?.[primary.length - 1]]) {
      const c = nodeEl.get(id);
      if (c) layers.ends.append(s('circle', { class: 'end', cx: c.getAttribute('cx'), cy: c.getAttribute('cy'), r: 8.5 }));
    }
  }

  // ---- tooltip ----
  const tip = $('#tip');
  function placeTip(ev) {
    const box = $('#mapbox').getBoundingClientRect();
    let x = ev.clientX - box.left + 14, y = ev.clientY - box.top + 12;
    tip.hidden = false;
    if (x + tip.offsetWidth > box.width - 8) x = ev.clientX - box.left - tip.offsetWidth - 14;
    if (y + tip.offsetHeight > box.height - 8) y = ev.clientY - box.top - tip.offsetHeight - 12;
    tip.style.left = `${x}px`;
    tip.style.top = `${y}px`;
  }
  function showLinkTip(ev, k) {
    const l = S.links.get(k);
    if (!l) return;
    tip.replaceChildren(h('b', null, `${l.a} – ${l.b}`), l.name ? ` ${l.name.toUpperCase()}` : '', ` · ${l.state} · RTT ${fmtMs(l.rtt_ms)}`,
      busier(l) != null ? ` · load ${fmtPct(busier(l))}` : '');
    placeTip(ev);
  }
  function showNodeTip(ev, id) {
    const n = S.nodes.get(id);
    if (!n) return;
    const con = n.connected === false ? 'not connected' : n.connected_for_s != null ? `connected ${fmtDur(n.connected_for_s)}` : 'connected';
    tip.replaceChildren(h('b', null, `${n.id}`), ` ${n.city}, ${n.country} · ${n.region} · ${con}`);
    placeTip(ev);
  }
  function hideTip() { tip.hidden = true; }

  // ---- the link panel ----
  function pin(k) {
    const old = S.pinned;
    S.pinned = k;
    if (old) paintLink(old);
    if (k) paintLink(k);
    $('[data-action="unpin"]').hidden = !k;
    renderLinkPanel();
  }
  function since(l) {
    if (l.since_s == null) return 'since the controller started';
    return `for ${fmtDur(l.since_s + (Date.now() - l._rx) / 1000)}`;
  }
  function utilRow(label, mbps, u, cap) {
    const bar = h('div', { class: 'bar' }, h('i'));
    if (u != null) {
      bar.firstChild.style.width = `${Math.min(100, u * 100)}%`;
      bar.firstChild.style.background = rampColour(u);
    }
    return [h('dt', null, label), h('dd', null, u == null ? 'not measured yet' : `${fmtRate(mbps)} · ${fmtPct(u)}`, bar)];
  }
  function renderLinkPanel() {
    const box = $('[data-link-body]');
    const k = S.hover || S.pinned;
    const l = k && S.links.get(k);
    if (!l) {
      box.replaceChildren(h('p', { class: 'muted' }, 'Hover over a link for its figures; click it to keep them here.'));
      return;
    }
    const chip = h('span', { class: 'state-chip', 'data-link-state': l.state }, l.state);
    chip.style.background = linkColour(l);
    box.replaceChildren(
      h('h3', null, `${l.a} – ${l.b}`, l.name ? h('span', { class: 'tag' }, l.name.toUpperCase()) : null, h('span', { class: 'tag' }, l.kind)),
      h('p', null, chip, ` ${since(l)}`, l.stale ? h('span', { class: 'err' }, ' · no fresh report') : null),
      h('dl', null,
        h('dt', null, 'RTT'), h('dd', null, `${fmtMs(l.rtt_ms)}`, l.min_rtt_ms != null ? h('span', { class: 'muted' }, ` (min ${fmtMs(l.min_rtt_ms)})`) : null),
        h('dt', null, 'jitter'), h('dd', null, fmtMs(l.jitter_ms)),
        h('dt', null, 'loss'), h('dd', null, fmtPct(l.loss)),
        utilRow(`${l.a} → ${l.b}`, l.load_ab_mbps, l.utilisation_ab),
        utilRow(`${l.b} → ${l.a}`, l.load_ba_mbps, l.utilisation_ba),
        h('dt', null, 'capacity'), h('dd', null, fmtRate(l.capacity_mbps)),
        h('dt', null, 'expected one way'), h('dd', null, fmtMs(l.expected_ms)),
        h('dt', null, 'cost in force'), h('dd', null, l.cost_in_force_ms == null ? 'not used' : fmtMs(l.cost_in_force_ms)),
      ),
    );
  }

  // ---- the path panel ----
  function hopList(path, cls, attr) {
    return h('ol', { class: cls }, (path || []).map((id, i) => h('li', { [attr]: i, title: S.nodes.get(id)?.city }, id)));
  }
  function expectedAlong(path) {
    let sum = 0;
    for (let i = 1; i < (path || []).length; i++) {
      const l = findLink(path[i - 1], path[i]);
      if (!l || l.expected_ms == null) return null;
      sum += l.expected_ms;
    }
    return sum;
  }
  function renderPathPanel() {
    const box = $('[data-path-body]');
    const r = S.route;
    if (!r) {
      box.replaceChildren(h('p', { class: 'muted' }, S.pick.from && !S.pick.to
        ? `From ${S.pick.from}: now pick where to (or click a second relay).`
        : 'Pick two cities above, or click one relay and then another, or pick a service.'));
      return;
    }
    if (r.error) {
      box.replaceChildren(h('p', { class: 'err' }, `${r.from} → ${r.to}: ${r.error}`));
      return;
    }
    const svc = r.service;
    const primary = svc && svc.path && svc.path.length ? svc.path : r.path;
    const reaches = primary.length && primary[primary.length - 1] === r.to;
    const expected = svc ? expectedAlong(primary) : r.expected_ms;
    const measured = svc ? svc.one_way_ms_p50 : r.measured_ms;
    const kids = [
      h('h3', null, svc ? svc.name : `${r.from} → ${r.to}`, svc ? h('span', { class: 'tag' }, `${svc.protocol} ${svc.ingress} → ${svc.egress}`) : null,
        h('span', { class: 'tag' }, `routes v${r.version}`)),
      h('p', { class: 'muted' }, svc ? 'placed path, hop by hop' : 'path in force, hop by hop'),
      hopList(primary, 'hops', 'data-hop'),
    ];
    if (!reaches) kids.push(h('p', { class: 'err' }, `no route to ${r.to} in force`));
    kids.push(h('div', { class: 'lat' },
      h('div', null, h('span', null, 'expected one way'), h('b', null, fmtMs(expected))),
      h('div', null, h('span', null, svc ? 'measured p50 / p99' : 'measured one way'),
        h('b', null, svc ? `${fmtMs(svc.one_way_ms_p50)}` : fmtMs(measured)),
        svc && svc.one_way_ms_p99 != null ? h('span', null, `p99 ${fmtMs(svc.one_way_ms_p99)}`) : null)));
    const dl = h('dl');
    if (!svc && r.cost_ms != null) dl.append(h('dt', null, 'cost in force'), h('dd', null, fmtMs(r.cost_ms)));
    if (svc && svc.loss != null) dl.append(h('dt', null, 'loss'), h('dd', null, fmtPct(svc.loss)));
    if (svc && svc.reordered != null) dl.append(h('dt', null, 'reordered'), h('dd', null, fmtPct(svc.reordered)));
    if (dl.childNodes.length) kids.push(dl);
    kids.push(h('p', { class: 'muted' }, r.repair_path
      ? `repair path (dashed), if ${r.path[0]}–${r.path[1]} fails:`
      : 'no repair path: a failure of the first hop has no local backup'));
    if (r.repair_path) kids.push(hopList(r.repair_path, 'hops repair', 'data-repair'));
    box.replaceChildren(...kids);
  }

  // ---- picking a path ----
  let routeSeq = 0;
  async function loadRoute() {
    const svc = S.pick.service && S.services ? S.services.find((x) => x.name === S.pick.service) : null;
    const from = svc ? svc.ingress : S.pick.from, to = svc ? svc.egress : S.pick.to;
    const seq = ++routeSeq;
    if (!from || !to) { S.route = null; renderPath(); renderPathPanel(); return; }
    let r;
    try {
      r = await getJSON(`${API}/routes?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
      r.service = svc;
    } catch (e) {
      r = { from, to, error: e.message };
    }
    if (seq !== routeSeq) return; // a newer pick answered first
    S.route = r;
    renderPath();
    renderPathPanel();
  }
  function setPick(from, to, service) {
    Object.assign(S.pick, { from, to, service });
    $('[data-pick="from"]').value = from;
    $('[data-pick="to"]').value = to;
    $('[data-pick="service"]').value = service;
    loadRoute();
  }
  function clickNode(id) {
    const { from, to } = S.pick;
    if (!from || (from && to) || S.pick.service) setPick(id, '', '');
    else if (id !== from) setPick(from, id, '');
  }
  function fillPickers() {
    const nodes = [...S.nodes.values()];
    const regions = [...new Set(nodes.map((n) => n.region))];
    for (const which of ['from', 'to']) {
      const sel = $(`[data-pick="${which}"]`);
      const keep = S.pick[which];
      sel.replaceChildren(h('option', { value: '' }, '—'), ...regions.map((reg) => h('optgroup', { label: reg },
        nodes.filter((n) => n.region === reg).sort((a, b) => a.city.localeCompare(b.city))
          .map((n) => h('option', { value: n.id }, `${n.id} · ${n.city}`)))));
      sel.value = S.nodes.has(keep) ? keep : '';
    }
    const svcSel = $('[data-pick="service"]');
    $('[data-pick-service-label]').hidden = !S.services;
    svcSel.replaceChildren(h('option', { value: '' }, '—'), ...(S.services || []).map((x) => h('option', { value: x.name }, `${x.name} (${x.protocol})`)));
    svcSel.value = S.pick.service;
  }
  async function loadServices() {
    try {
      S.services = await getJSON(`${API}/services`);
    } catch (e) {
      S.services = null; // an older server: no service picker
    }
  }

  // After a change of state, the path shown is asked for again: at once for a state
  // change or a timeline event, at most every 2 s for new measurements.
  let refreshTimer = null, lastRefresh = 0;
  function refreshPath(urgent) {
    if (!S.route) return;
    const wait = urgent ? 150 : Math.max(150, 2000 - (Date.now() - lastRefresh));
    if (refreshTimer && !urgent) return;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      lastRefresh = Date.now();
      if (S.pick.service) await loadServices();
      await loadRoute();
    }, wait);
  }

  // ---- summary and timeline ----
  function renderSummary() {
    const count = { up: 0, degraded: 0, down: 0, 'held-down': 0, unknown: 0 };
    for (const l of S.links.values()) count[l.state] = (count[l.state] || 0) + 1;
    const box = $('[data-summary]');
    box.setAttribute('data-nodes', S.nodes.size);
    box.setAttribute('data-links', S.links.size);
    box.setAttribute('data-down', count.down);
    const gone = [...S.nodes.values()].filter((n) => n.connected === false).length;
    const parts = [h('b', null, String(S.nodes.size)), ' relays · ', h('b', null, String(S.links.size)), ' links'];
    if (gone) parts.push(' · ', h('b', { class: 'bad' }, `${gone} not connected`));
    if (count.down) parts.push(' · ', h('b', { class: 'bad' }, `${count.down} down`));
    if (count['held-down']) parts.push(' · ', h('b', null, `${count['held-down']} held down`));
    if (count.degraded) parts.push(' · ', h('b', { class: 'warn' }, `${count.degraded} degraded`));
    if (count.unknown) parts.push(' · ', h('b', null, `${count.unknown} not reported`));
    box.replaceChildren(...parts);
  }
  const KIND_COLOUR = { 'link-down': '#ff6b61', cut: '#ff6b61', 'link-up': '#5fe08a', restore: '#5fe08a', reroute: '#5aa9e6', drain: '#ffcf5c' };
  function timelineItem(ev) {
    const kind = h('span', { class: 'kind' }, ev.kind || 'event');
    kind.style.color = KIND_COLOUR[ev.kind] || '#c99bff';
    const li = h('li', { 'data-event': ev.kind, 'data-a': ev.a || null, 'data-b': ev.b || null },
      h('time', { datetime: ev.at_s != null ? new Date(ev.at_s * 1000).toISOString() : null }, fmtTime(ev.at_s)),
      h('span', null, kind, ev.text || ''));
    if (ev.a && ev.b) {
      li.addEventListener('click', () => {
        const l = findLink(ev.a, ev.b);
        if (l) pin(key(l.a, l.b));
      });
    }
    return li;
  }
  function addTimeline(ev) {
    const list = $('[data-timeline]');
    list.prepend(timelineItem(ev));
    while (list.childElementCount > 200) list.lastElementChild.remove();
  }

  // ---- the stream ----
  const live = $('#live');
  function setLive(state) {
    live.setAttribute('data-live', state);
    live.textContent = state === 'live' ? 'live' : state === 'connecting' ? 'connecting…' : 'reconnecting…';
  }
  let es = null, backoff = 1000, retryTimer = null, everLive = false;
  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    setLive(everLive ? 'reconnecting' : 'connecting');
    es = new EventSource(`${API}/stream`);
    es.addEventListener('snapshot', async (e) => {
      const snap = JSON.parse(e.data);
      const rx = Date.now();
      S.nodes = new Map(snap.nodes.map((n) => [n.id, n]));
      S.links = new Map(snap.links.map((l) => [key(l.a, l.b), Object.assign(l, { _rx: rx })]));
      if (Array.isArray(snap.timeline)) {
        $('[data-timeline]').replaceChildren();
        snap.timeline.forEach(addTimeline);
      }
      everLive = true;
      backoff = 1000;
      $('#error').hidden = true;
      render();
      renderSummary();
      renderLinkPanel();
      setLive('live');
      await loadServices();
      fillPickers();
      loadRoute();
    });
    es.addEventListener('links', (e) => {
      const rx = Date.now();
      let rebuild = false, stateChanged = false;
      for (const l of JSON.parse(e.data)) {
        const k = key(l.a, l.b);
        const old = S.links.get(k);
        if (!old) rebuild = true;
        else if (old.state !== l.state) stateChanged = true;
        S.links.set(k, Object.assign(l, { _rx: rx }));
        if (!rebuild) paintLink(k);
      }
      if (rebuild) render();
      renderSummary();
      if (S.hover || S.pinned) renderLinkPanel();
      refreshPath(stateChanged);
    });
    es.addEventListener('nodes', (e) => {
      let rebuild = false;
      for (const n of JSON.parse(e.data)) {
        const old = S.nodes.get(n.id);
        if (!old || old.lat !== n.lat || old.lon !== n.lon) rebuild = true;
        S.nodes.set(n.id, n);
        if (!rebuild && nodeEl.get(n.id)) paintNode(nodeEl.get(n.id), n);
      }
      if (rebuild) { render(); fillPickers(); }
      renderSummary();
    });
    es.addEventListener('timeline', (e) => {
      addTimeline(JSON.parse(e.data));
      refreshPath(true);
    });
    es.onerror = () => {
      setLive(everLive ? 'reconnecting' : 'connecting');
      // The browser retries by itself after a network error; after an HTTP error
      // (a 503 at the stream cap, a restart serving 404 for a moment) it gives up: retry here.
      if (es.readyState === EventSource.CLOSED) {
        retryTimer = setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 15000);
      }
    };
  }

  async function getJSON(url) {
    const res = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new Error((body && body.error) || `HTTP ${res.status}`);
    return body;
  }

  // ---- legend ----
  function legend() {
    const swatch = (colour, dash, width) => {
      const e = s('svg', { viewBox: '0 0 30 10' });
      e.append(s('line', { x1: 2, y1: 5, x2: 28, y2: 5, stroke: colour, 'stroke-width': width || 2.5, 'stroke-dasharray': dash, 'stroke-linecap': 'round' }));
      return e;
    };
    const row = (sw, text) => h('div', null, sw, text);
    const ramp = h('div', { class: 'ramp' });
    ramp.style.background = `linear-gradient(to right, ${LOAD_RAMP.map(([u, c]) => `${c} ${u * 100}%`).join(', ')})`;
    const haloSw = s('svg', { viewBox: '0 0 30 10' });
    haloSw.append(s('line', { x1: 3, y1: 5, x2: 27, y2: 5, stroke: '#fff', 'stroke-opacity': 0.5, 'stroke-width': 9, 'stroke-linecap': 'round' }),
      s('line', { x1: 3, y1: 5, x2: 27, y2: 5, stroke: rampColour(0.3), 'stroke-width': 2.5 }));
    const grid = (...rows) => h('div', { class: 'grid' }, ...rows);
    $('[data-legend]').replaceChildren(h('details', { open: '' }, h('summary', null, 'Legend'),
      h('h4', null, 'Load of the busier direction'), ramp,
      h('div', { class: 'ticks' }, h('span', null, '0 %'), h('span', null, '50 %'), h('span', null, '100 %')),
      grid(row(swatch(UNKNOWN_LOAD), 'load not measured'), row(swatch(STATE_COLOUR.degraded), 'degraded'),
        row(swatch(STATE_COLOUR['held-down'], '1 4'), 'held down'), row(swatch(STATE_COLOUR.down, '5 4'), 'down'),
        row(swatch(STATE_COLOUR.unknown, '2 3'), 'unknown'), h('div'),
        row(swatch('#c9d5e1', null, KIND_WIDTH.undersea), 'undersea'), row(swatch('#c9d5e1', null, KIND_WIDTH.terrestrial), 'terrestrial'),
        row(swatch('#c9d5e1', null, KIND_WIDTH.internet), 'internet'), h('div'),
        row(haloSw, 'path in force'), row(swatch('#f4f7fa', '8 6'), 'repair path')),
      h('p', { class: 'note' }, 'degraded: up, but loss > 1 % or jitter > 10 ms; held down: back up, not yet used by routes; unknown: no fresh report from either end'),
    ));
  }

  // ---- zoom and pan (re-projects, so labels and lines keep their size) ----
  let frame = null;
  const redraw = () => { if (!frame) frame = requestAnimationFrame(() => { frame = null; render(); }); };
  function zoomAt(f, cx, cy) {
    const v = S.view;
    const k = Math.max(1, Math.min(12, v.k * f));
    const g = k / v.k;
    v.x = cx - (cx - v.x) * g;
    v.y = cy - (cy - v.y) * g;
    v.k = k;
    if (k === 1) { v.x = 0; v.y = 0; }
    redraw();
  }
  svg.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const b = svg.getBoundingClientRect();
    zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - b.left, ev.clientY - b.top);
  }, { passive: false });
  let drag = null;
  svg.addEventListener('pointerdown', (ev) => {
    if (ev.button !== 0 || ev.target.closest('.hit, .node')) return;
    drag = { x: ev.clientX, y: ev.clientY, vx: S.view.x, vy: S.view.y, moved: false };
    svg.setPointerCapture(ev.pointerId);
  });
  svg.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    drag.moved = true;
    svg.classList.add('dragging');
    S.view.x = drag.vx + dx;
    S.view.y = drag.vy + dy;
    redraw();
  });
  svg.addEventListener('pointerup', () => {
    if (drag && !drag.moved && S.pinned) pin(null); // a click on the sea unpins
    drag = null;
    svg.classList.remove('dragging');
  });
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('[data-action]');
    if (!a) return;
    const act = a.getAttribute('data-action');
    const b = svg.getBoundingClientRect();
    if (act === 'zoom-in') zoomAt(1.5, b.width / 2, b.height / 2);
    if (act === 'zoom-out') zoomAt(1 / 1.5, b.width / 2, b.height / 2);
    if (act === 'fit') { S.view = { k: 1, x: 0, y: 0 }; redraw(); }
    if (act === 'clear') setPick('', '', '');
    if (act === 'unpin') pin(null);
  });
  for (const which of ['from', 'to']) {
    $(`[data-pick="${which}"]`).addEventListener('change', (ev) => {
      const p = { ...S.pick, service: '' };
      p[which] = ev.target.value;
      setPick(p.from, p.to, '');
    });
  }
  $('[data-pick="service"]').addEventListener('change', (ev) => setPick('', '', ev.target.value));
  new ResizeObserver(redraw).observe($('#mapbox'));

  // The "for 3 m 12 s" in the link panel moves on by itself, without asking the server.
  setInterval(() => { if (S.hover || S.pinned) renderLinkPanel(); }, 1000);

  legend();
  connect();
  getJSON('/map/land-110m.json')
    .then((topo) => { S.land = decodeTopo(topo, 'land'); render(); })
    .catch((e) => { const box = $('#error'); box.textContent = `land outline not loaded: ${e.message}`; box.hidden = false; });
})();
