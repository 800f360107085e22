// The live map's geometry, apart from the page's state and DOM: TopoJSON decoding,
// the Pacific-centred projection, land and link paths, label placement. Pure
// functions of their arguments; map.js calls them as window.OverlayMapGeo.
'use strict';
window.OverlayMapGeo = (() => {
  const KIND_BOW = { undersea: 1, internet: -1, terrestrial: 0 }; // curve north, south, straight

  // ---- TopoJSON: quantized, delta-encoded arcs -> rings of [lon, lat] ----
  function decodeTopo(topo, name) {
    const t = topo.transform;
    const arcs = topo.arcs.map((arc) => {
      let x = 0, y = 0;
      return arc.map(([a, b]) => {
        if (!t) return [a, b];
        x += a; y += b;
        return [x * t.scale[0] + t.translate[0], y * t.scale[1] + t.translate[1]];
      });
    });
    const arc = (i) => (i >= 0 ? arcs[i] : arcs[~i].slice().reverse());
    const ring = (ids) => ids.flatMap((i, n) => (n ? arc(i).slice(1) : arc(i)));
    const rings = [];
    const walk = (g) => {
      if (g.type === 'GeometryCollection') g.geometries.forEach(walk);
      else if (g.type === 'Polygon') g.arcs.forEach((r) => rings.push(ring(r)));
      else if (g.type === 'MultiPolygon') g.arcs.forEach((p) => p.forEach((r) => rings.push(ring(r))));
    };
    walk(topo.objects[name]);
    return rings;
  }

  // ---- projection: Miller cylindrical, centred on the fleet's own longitudes ----
  const norm180 = (d) => ((((d + 180) % 360) + 360) % 360) - 180;
  const millerY = (lat) => {
    const phi = (Math.max(-85, Math.min(85, lat)) * Math.PI) / 180;
    return (-1.25 * Math.log(Math.tan(Math.PI / 4 + 0.4 * phi)) * 180) / Math.PI;
  };
  function projection(nodes, w, h, view) {
    // The centre meridian is opposite the widest gap between the fleet's longitudes: for
    // Asia + North America that puts the Pacific (and the antimeridian) in the middle.
    const lons = nodes.map((n) => ((n.lon % 360) + 360) % 360).sort((a, b) => a - b);
    let gap = -1, after = 0;
    lons.forEach((lon, i) => {
      const next = i + 1 < lons.length ? lons[i + 1] : lons[0] + 360;
      if (next - lon > gap) { gap = next - lon; after = lon; }
    });
    const centre = lons.length > 1 ? norm180(after + gap / 2 + 180) : lons[0] || 0;
    const X = (lon) => norm180(lon - centre);
    const xs = nodes.map((n) => X(n.lon)), ys = nodes.map((n) => millerY(n.lat));
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const m = { l: 50, r: 60, t: 54, b: 40 }; // room for labels and the bowed undersea lines
    const k0 = Math.min((w - m.l - m.r) / Math.max(x1 - x0, 1), (h - m.t - m.b) / Math.max(y1 - y0, 1));
    const ox = m.l + (w - m.l - m.r - (x1 - x0) * k0) / 2 - x0 * k0;
    const oy = m.t + (h - m.t - m.b - (y1 - y0) * k0) / 2 - y0 * k0;
    const k = k0 * view.k;
    return {
      X, centre, k,
      px: (x) => (x * k0 + ox) * view.k + view.x, // x in centred degrees
      py: (lat) => (millerY(lat) * k0 + oy) * view.k + view.y,
    };
  }

  // ---- geometry ----
  const r1 = (v) => Math.round(v * 10) / 10;
  function landPath(rings, P, w, h) {
    let d = '';
    for (const ring of rings) {
      if (ring.every((p) => p[1] < -60)) continue; // Antarctica is off this map
      // Unwrap so a ring that crosses the seam stays in one piece, then draw the copy
      // (or copies, 360° apart) that fall in view.
      let off = 0, prev = null, lo = Infinity, hi = -Infinity;
      const pts = ring.map(([lon, lat]) => {
        let x = P.X(lon) + off;
        if (prev != null) {
          while (x - prev > 180) { x -= 360; off -= 360; }
          while (x - prev < -180) { x += 360; off += 360; }
        }
        prev = x; lo = Math.min(lo, x); hi = Math.max(hi, x);
        return [x, lat];
      });
      for (const shift of [-360, 0, 360]) {
        const a = P.px(lo + shift), b = P.px(hi + shift);
        if (b < -50 || a > w + 50) continue;
        let last = null, seg = '';
        for (const [x, lat] of pts) {
          const q = [r1(P.px(x + shift)), r1(P.py(lat))];
          if (last && Math.abs(q[0] - last[0]) < 0.6 && Math.abs(q[1] - last[1]) < 0.6) continue;
          seg += (seg ? 'L' : 'M') + q[0] + ',' + q[1];
          last = q;
        }
        d += seg + 'Z';
      }
    }
    return d;
  }

  // A link's drawing: straight over land, bowed for the long lines (undersea north,
  // internet south) so parallel trans-Pacific lines stay apart. A link whose short way
  // round crosses the map's edge is drawn as two pieces leaving each side.
  function linkGeom(l, nodes, P, bowPx) {
    const A = nodes.get(l.a), B = nodes.get(l.b);
    if (!A || !B) return null;
    const xa = P.X(A.lon), xb = P.X(B.lon);
    const pieces = Math.abs(xb - xa) <= 180 ? [[xa, xb]] : (() => {
      const sh = xb > xa ? -360 : 360;
      return [[xa, xb + sh], [xa - sh, xb]];
    })();
    let d = '', mid = null, curve = null;
    for (const [ua, ub] of pieces) {
      const p = [P.px(ua), P.py(A.lat)], q = [P.px(ub), P.py(B.lat)];
      const dx = q[0] - p[0], dy = q[1] - p[1], len = Math.hypot(dx, dy) || 1;
      let nx = -dy / len, ny = dx / len;
      if (ny > 0) { nx = -nx; ny = -ny; } // the normal that points up (north)
      const bow = bowPx != null ? bowPx : (KIND_BOW[l.kind] || 0) * Math.min(0.13 * len, 140);
      const c = [(p[0] + q[0]) / 2 + nx * bow, (p[1] + q[1]) / 2 + ny * bow];
      d += bow ? `M${r1(p[0])},${r1(p[1])}Q${r1(c[0])},${r1(c[1])} ${r1(q[0])},${r1(q[1])}`
        : `M${r1(p[0])},${r1(p[1])}L${r1(q[0])},${r1(q[1])}`;
      if (!curve) curve = { p, c, q };
    }
    const at = (t) => {
      const { p, c, q } = curve, u = 1 - t;
      return [u * u * p[0] + 2 * u * t * c[0] + t * t * q[0], u * u * p[1] + 2 * u * t * c[1] + t * t * q[1]];
    };
    mid = at(0.5);
    return { d, mid, at };
  }

  // The undersea lines run between nearby landings, so bows of one shape would lay
  // them on top of each other: fan them out, each apex at least `gap` px north of the
  // apex of the line south of it (in the order of their chords' midpoints).
  function underseaBows(links, nodes, P, zoom) {
    const items = [];
    for (const [k, l] of links) {
      const A = nodes.get(l.a), B = nodes.get(l.b);
      if (l.kind !== 'undersea' || !A || !B || Math.abs(P.X(B.lon) - P.X(A.lon)) > 180) continue;
      const p = [P.px(P.X(A.lon)), P.py(A.lat)], q = [P.px(P.X(B.lon)), P.py(B.lat)];
      const len = Math.hypot(q[0] - p[0], q[1] - p[1]);
      const midY = (p[1] + q[1]) / 2, natural = Math.min(0.13 * len, 140);
      items.push({ k, midY, apex: midY - natural / 2, natural });
    }
    items.sort((a, b) => b.midY - a.midY); // south first
    const gap = 17 * zoom, bows = new Map();
    let south = Infinity;
    for (const it of items) {
      const apex = Math.min(it.apex, south - gap);
      bows.set(it.k, Math.max(it.natural, 2 * (it.midY - apex)));
      south = apex;
    }
    return bows;
  }

  // ---- label placement: greedy, first free spot of eight, else hidden ----
  function placeLabels(items, taken, w, h) {
    const overlaps = (b) => taken.some((t) => b.x < t.x + t.w && t.x < b.x + b.w && b.y < t.y + t.h && t.y < b.y + b.h);
    for (const it of items) {
      const tw = it.text.length * it.cw + 2, th = it.ch;
      const d = it.gap;
      const spots = it.spots || [
        [d, -th / 2, 'start'], [-d - tw, -th / 2, 'end'], [-tw / 2, -d - th, 'middle'], [-tw / 2, d, 'middle'],
        [d * 0.7, -d * 0.7 - th, 'start'], [d * 0.7, d * 0.7, 'start'], [-d * 0.7 - tw, -d * 0.7 - th, 'end'], [-d * 0.7 - tw, d * 0.7, 'end'],
      ];
      it.placed = null;
      for (const [ox, oy, anchor] of spots) {
        const b = { x: it.x + ox, y: it.y + oy, w: tw, h: th };
        if (b.x < 2 || b.y < 2 || b.x + b.w > w - 2 || b.y + b.h > h - 2) continue;
        if (!overlaps(b)) {
          taken.push(b);
          const tx = anchor === 'start' ? b.x : anchor === 'end' ? b.x + tw : b.x + tw / 2;
          it.placed = { x: tx, y: b.y + th * 0.78, anchor };
          break;
        }
      }
    }
  }

  return { decodeTopo, projection, landPath, linkGeom, underseaBows, placeLabels, r1 };
})();
