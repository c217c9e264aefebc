/* mkunet slice viewer: written for mkunet (no library). Reads the JSON payload of
   mkunet.report.viewer.viewer_payload from the JSON script element #mk-data, inflates the arrays with the
   browser's DecompressionStream and draws axial slices on canvases. Fetches nothing.
   Arrays are (z, y, x), row-major; HU int16; masks uint8 bit fields (bit i = lesion i);
   maps uint8 (value x 255). */
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('mk-data').textContent);
  var root = document.getElementById('mk-viewer');
  var NZ = D.shape[0], NY = D.shape[1], NX = D.shape[2];
  var SZ = D.spacing[0], SY = D.spacing[1], SX = D.spacing[2];
  var T = D.timepoints;
  var state = {
    k: Math.min(Math.max(D.default_slice, 0), NZ - 1),
    win: 'lung', contour: true, probability: false, attention: false,
    view: 'all', cursor: null, focus: -1
  };
  var arrays = [];
  var panels = [];

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); }); }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function fmt(v, d) { return (v === null || v === undefined || !isFinite(v)) ? '\u2014' : Number(v).toFixed(d); }
  function b64(s) {
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function inflate(entry) {
    if (!entry) { return Promise.resolve(null); }
    var stream = new Blob([b64(entry.data)]).stream().pipeThrough(new DecompressionStream('deflate'));
    return new Response(stream).arrayBuffer().then(function (buf) {
      return entry.dtype === 'int16' ? new Int16Array(buf) : new Uint8Array(buf);
    });
  }
  // physical (x, y, z) mm of a voxel index (z, y, x) of the viewer grid
  function physical(k, j, i) {
    var d = D.direction, o = D.origin, v = [i * SX, j * SY, k * SZ];
    return [0, 1, 2].map(function (r) { return o[r] + d[3 * r] * v[0] + d[3 * r + 1] * v[1] + d[3 * r + 2] * v[2]; });
  }
  function anyMap(name) { return T.some(function (t) { return t[name] !== null; }); }
  function visible(j) { return state.view === 'all' || state.view === j; }

  // ------------------------------------------------------------------ controls
  function radio(group, value, label, checked) {
    var id = 'mk-' + group + '-' + value;
    var wrap = el('span', { 'class': 'mk-choice' });
    var input = el('input', { type: 'radio', name: 'mk-' + group, id: id, value: String(value) });
    input.checked = !!checked;
    wrap.appendChild(input);
    wrap.appendChild(el('label', { 'for': id }, label));
    return wrap;
  }
  function checkbox(name, label, checked, disabled, note) {
    var id = 'mk-' + name;
    var wrap = el('span', { 'class': 'mk-choice' });
    var input = el('input', { type: 'checkbox', id: id });
    input.checked = !!checked;
    input.disabled = !!disabled;
    wrap.appendChild(input);
    wrap.appendChild(el('label', { 'for': id }, label));
    if (note) {
      input.setAttribute('aria-describedby', id + '-note');
      wrap.appendChild(el('span', { 'class': 'mk-note', id: id + '-note' }, note));
    }
    return wrap;
  }

  function build() {
    root.textContent = '';
    var controls = el('section', { 'class': 'mk-controls', 'aria-label': 'viewer controls' });
    var sliceBox = el('div', { 'class': 'mk-slice' });
    sliceBox.appendChild(el('label', { 'for': 'mk-slice' }, 'Slice'));
    var slider = el('input', { type: 'range', id: 'mk-slice', min: '0', max: String(NZ - 1), step: '1' });
    slider.value = String(state.k);
    sliceBox.appendChild(slider);
    sliceBox.appendChild(el('output', { id: 'mk-readout', 'for': 'mk-slice', 'aria-live': 'polite' }));
    controls.appendChild(sliceBox);

    var win = el('fieldset'); win.appendChild(el('legend', null, 'Window (key w)'));
    win.appendChild(radio('win', 'lung', 'lung W1500/L\u2212600', true));
    win.appendChild(radio('win', 'mediastinum', 'mediastinum W400/L40', false));
    controls.appendChild(win);

    var ov = el('fieldset'); ov.appendChild(el('legend', null, 'Overlays'));
    ov.appendChild(checkbox('contour', 'contour (c)', true, D.lesions.length === 0,
      D.lesions.length === 0 ? 'no contour' : null));
    var hasP = anyMap('probability'), hasA = anyMap('attention');
    ov.appendChild(checkbox('probability', 'probability map (p)', false, !hasP,
      hasP ? null : 'not available: no probability map was stored'));
    ov.appendChild(checkbox('attention', 'attention map (a)', false, !hasA,
      hasA ? null : 'not available: the network did not run on these scans'));
    controls.appendChild(ov);

    var tps = el('fieldset'); tps.appendChild(el('legend', null, 'Timepoints (keys 0\u20139)'));
    tps.appendChild(radio('view', 'all', 'all side by side', true));
    T.forEach(function (t, j) { tps.appendChild(radio('view', j, t.label, false)); });
    controls.appendChild(tps);
    root.appendChild(controls);

    var area = el('div', { id: 'mk-panels', tabindex: '0', role: 'group',
      'aria-label': 'Axial slices, one panel per timepoint. Arrow keys or the mouse wheel change the slice; ' +
        'Shift with the arrow keys moves the cursor.' });
    T.forEach(function (t, j) {
      var fig = el('figure', { 'class': 'mk-panel', 'data-tp': String(j) });
      var cap = el('figcaption');
      var reg = t.registration === 'baseline' ? 'baseline' :
        (t.registration === 'none' ? 'not registered (scanner coordinates)' : 'registered (' + t.registration + ')');
      cap.appendChild(el('strong', null, t.label));
      cap.appendChild(document.createTextNode(' \u00b7 day ' + fmt(t.days, 0) + ' \u00b7 ' +
        fmt(t.volume_cm3, 2) + ' cm\u00b3 \u00b7 ' + reg));
      fig.appendChild(cap);
      if (t.qc === 'review') {  // the quality control flagged this scan: say why, above the image
        fig.className += ' mk-review';
        fig.appendChild(el('p', { 'class': 'mk-qc', role: 'note' }, 'review: ' + (t.qc_reasons || 'flagged by QC')));
      }
      var canvas = el('canvas', { role: 'img', 'class': 'mk-canvas', 'data-tp': String(j) });
      canvas.textContent = 'CT slice of ' + t.label;
      fig.appendChild(canvas);
      var notes = [];
      if (t.note) { notes.push(t.note); }
      if (t.attention === null && hasA) { notes.push('no attention map for this scan'); }
      if (t.probability === null && hasP) { notes.push('no probability map for this scan'); }
      fig.appendChild(el('p', { 'class': 'mk-note' }, notes.join('; ')));
      area.appendChild(fig);
      var off = document.createElement('canvas');
      off.width = NX; off.height = NY;
      panels.push({ fig: fig, canvas: canvas, off: off, image: off.getContext('2d').createImageData(NX, NY) });
    });
    root.appendChild(area);
    root.appendChild(el('p', { id: 'mk-cursor', 'aria-live': 'polite' },
      'Cursor: move the mouse over a panel, or press Shift + arrow keys.'));
    root.appendChild(table());
    var notes = el('ul', { 'class': 'mk-notes' });
    D.notes.forEach(function (n) { notes.appendChild(el('li', null, n)); });
    notes.appendChild(el('li', null, 'Keys: \u2191/\u2192 next slice, \u2193/\u2190 previous, PageUp/PageDown \u00b15, ' +
      'Home/End, w window, c contour, p probability, a attention, 0 all timepoints, 1\u20139 one timepoint, ' +
      'Shift+arrows cursor. Volumes as measured on each scan\u2019s own grid.'));
    root.appendChild(notes);
  }

  function table() {
    var t = el('table', { id: 'mk-table' });
    t.appendChild(el('caption', null, 'Volume per timepoint and lesion: click a row (or Enter) to jump to it'));
    var head = el('tr');
    ['scan', 'day', 'lesion', 'lesion volume (cm\u00b3)', 'scan volume (cm\u00b3)', 'slice'].forEach(function (h) {
      head.appendChild(el('th', { scope: 'col' }, h));
    });
    var thead = el('thead'); thead.appendChild(head); t.appendChild(thead);
    var body = el('tbody');
    T.forEach(function (tp, j) {
      var ids = D.lesions.length ? D.lesions.map(function (l) { return l.id; }) : [null];
      ids.forEach(function (lid) {
        var k = lid === null ? null : tp.lesion_slices[lid];
        var row = el('tr', { tabindex: '0', 'class': 'mk-row', 'data-tp': String(j), 'data-lesion': lid || '' });
        row.appendChild(el('td', null, tp.label));
        row.appendChild(el('td', null, fmt(tp.days, 0)));
        var cell = el('td');
        if (lid !== null) {
          var sw = el('span', { 'class': 'mk-swatch' });
          sw.style.borderColor = D.lesions.filter(function (l) { return l.id === lid; })[0].colour;
          cell.appendChild(sw);
        }
        cell.appendChild(document.createTextNode(lid === null ? '\u2014' : lid));
        row.appendChild(cell);
        row.appendChild(el('td', null, lid === null ? '\u2014' : fmt(tp.lesion_volumes_cm3[lid], 3)));
        row.appendChild(el('td', null, fmt(tp.volume_cm3, 3)));
        row.appendChild(el('td', null, k === null || k === undefined ? 'not present' : String(k + 1)));
        row.setAttribute('aria-label', 'Jump to ' + (lid === null ? '' : 'lesion ' + lid + ' at ') + tp.label);
        body.appendChild(row);
      });
    });
    t.appendChild(body);
    return t;
  }

  // ------------------------------------------------------------------ drawing
  function layout() {
    var n = state.view === 'all' ? T.length : 1;
    var avail = Math.max(260, Math.min(1400, (root.clientWidth || 1100)) / n - 24);
    var side = Math.min(state.view === 'all' ? 420 : 640, avail);
    var wmm = NX * SX, hmm = NY * SY, ppm = side / Math.max(wmm, hmm);
    panels.forEach(function (p, j) {
      p.fig.hidden = !visible(j);
      var w = Math.max(1, Math.round(wmm * ppm)), h = Math.max(1, Math.round(hmm * ppm));
      if (p.canvas.width !== w || p.canvas.height !== h) { p.canvas.width = w; p.canvas.height = h; }
    });
  }

  function heat(v) { return [Math.min(1, 3 * v) * 255, Math.min(1, Math.max(0, 3 * v - 1)) * 255, Math.min(1, Math.max(0, 3 * v - 2)) * 255]; }

  function drawPanel(j) {
    var p = panels[j], a = arrays[j], k = state.k, n = NY * NX, off = k * n;
    var w = D.windows[state.win], lo = w.level - w.width / 2, scale = 255 / w.width;
    var px = p.image.data, ct = a.ct;
    var prob = state.probability ? a.probability : null, att = state.attention ? a.attention : null;
    for (var i = 0; i < n; i++) {
      var g = (ct[off + i] - lo) * scale;
      g = g < 0 ? 0 : (g > 255 ? 255 : g);
      var r = g, gg = g, b = g;
      if (prob) {
        var pv = prob[off + i] / 255;
        if (pv > 0) { var pa = 0.55 * pv; r = r * (1 - pa); gg = gg * (1 - pa) + 200 * pa; b = b * (1 - pa) + 255 * pa; }
      }
      if (att) {
        var av = att[off + i] / 255;
        if (av > 0) { var aa = 0.6 * av, c = heat(av); r = r * (1 - aa) + c[0] * aa; gg = gg * (1 - aa) + c[1] * aa; b = b * (1 - aa) + c[2] * aa; }
      }
      var q = 4 * i;
      px[q] = r; px[q + 1] = gg; px[q + 2] = b; px[q + 3] = 255;
    }
    p.off.getContext('2d').putImageData(p.image, 0, 0);
    var ctx = p.canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(p.off, 0, 0, p.canvas.width, p.canvas.height);
    var sx = p.canvas.width / NX, sy = p.canvas.height / NY;
    var shown = [];
    if (state.contour) {
      var m = a.mask;
      D.lesions.forEach(function (les) {
        var bit = 1 << les.bit, any = false;
        ctx.beginPath();
        for (var y = 0; y < NY; y++) {
          for (var x = 0; x < NX; x++) {
            var idx = off + y * NX + x;
            if (!(m[idx] & bit)) { continue; }
            any = true;
            if (x === 0 || !(m[idx - 1] & bit)) { ctx.moveTo(x * sx, y * sy); ctx.lineTo(x * sx, (y + 1) * sy); }
            if (x === NX - 1 || !(m[idx + 1] & bit)) { ctx.moveTo((x + 1) * sx, y * sy); ctx.lineTo((x + 1) * sx, (y + 1) * sy); }
            if (y === 0 || !(m[idx - NX] & bit)) { ctx.moveTo(x * sx, y * sy); ctx.lineTo((x + 1) * sx, y * sy); }
            if (y === NY - 1 || !(m[idx + NX] & bit)) { ctx.moveTo(x * sx, (y + 1) * sy); ctx.lineTo((x + 1) * sx, (y + 1) * sy); }
          }
        }
        ctx.strokeStyle = les.colour; ctx.lineWidth = 2; ctx.stroke();
        if (any) { shown.push(les.id); }
      });
    }
    if (state.cursor) {
      var cx = (state.cursor[1] + 0.5) * sx, cy = (state.cursor[0] + 0.5) * sy, gap = 6;
      ctx.strokeStyle = '#ffff00'; ctx.lineWidth = 1; ctx.beginPath();
      ctx.moveTo(0, cy); ctx.lineTo(cx - gap, cy); ctx.moveTo(cx + gap, cy); ctx.lineTo(p.canvas.width, cy);
      ctx.moveTo(cx, 0); ctx.lineTo(cx, cy - gap); ctx.moveTo(cx, cy + gap); ctx.lineTo(cx, p.canvas.height);
      ctx.stroke();
    }
    var t = T[j], z = physical(k, 0, 0)[2];
    var alt = t.label + ', day ' + fmt(t.days, 0) + ': axial CT slice ' + (k + 1) + ' of ' + NZ + ' at z = ' +
      fmt(z, 1) + ' mm, ' + state.win + ' window; ' +
      (state.contour ? (shown.length ? 'contour of lesion ' + shown.join(', ') + ' shown' : 'no contour on this slice') : 'contours hidden') +
      (prob ? '; probability map shown' : '') + (att ? '; attention map shown' : '') + '.';
    p.canvas.setAttribute('aria-label', alt);
    p.canvas.textContent = alt;
    p.fig.classList.toggle('mk-focus', state.focus === j);
  }

  function render() {
    layout();
    T.forEach(function (t, j) { if (visible(j)) { drawPanel(j); } });
    var k = state.k, z = physical(k, 0, 0)[2];
    document.getElementById('mk-slice').value = String(k);
    document.getElementById('mk-readout').textContent = 'slice ' + (k + 1) + ' / ' + NZ + ' \u00b7 z = ' + fmt(z, 1) +
      ' mm \u00b7 baseline slice ' + (D.baseline_slices[0] + k) + ' \u00b7 ' + fmt(SZ, 2) + ' mm apart';
    var c = document.getElementById('mk-cursor');
    if (state.cursor) {
      var pt = physical(k, state.cursor[0], state.cursor[1]), i = k * NY * NX + state.cursor[0] * NX + state.cursor[1];
      c.textContent = 'Cursor (x, y, z) = (' + pt.map(function (v) { return fmt(v, 1); }).join(', ') + ') mm \u00b7 HU: ' +
        T.map(function (t, j) { return t.label + ' ' + arrays[j].ct[i]; }).join(', ');
    }
    root.setAttribute('data-slice', String(k));
    root.setAttribute('data-window', state.win);
    root.setAttribute('data-view', String(state.view));
  }

  // ------------------------------------------------------------------ interaction
  function setSlice(k) { state.k = Math.min(Math.max(k, 0), NZ - 1); render(); }
  function setView(v) {
    state.view = v;
    var r = document.getElementById('mk-view-' + v);
    if (r) { r.checked = true; }
    render();
  }
  function toggle(name) {
    var box = document.getElementById('mk-' + name);
    if (box.disabled) { return; }
    box.checked = !box.checked; state[name] = box.checked; render();
  }
  function setWindow(w) { state.win = w; document.getElementById('mk-win-' + w).checked = true; render(); }
  function moveCursor(dy, dx) {
    var c = state.cursor || [Math.floor(NY / 2), Math.floor(NX / 2)];
    state.cursor = [Math.min(Math.max(c[0] + dy, 0), NY - 1), Math.min(Math.max(c[1] + dx, 0), NX - 1)];
    render();
  }
  function jump(j, lid) {
    if (j < 0 || j >= T.length) { return; }
    var t = T[j], ids = lid ? [lid] : D.lesions.map(function (l) { return l.id; });
    var hit = ids.filter(function (id) { return t.lesion_slices[id] !== null && t.lesion_slices[id] !== undefined; })[0];
    state.focus = j;
    if (state.view !== 'all') { state.view = j; var r = document.getElementById('mk-view-' + j); if (r) { r.checked = true; } }
    if (hit !== undefined) {
      var c = t.lesion_centres_yx[hit];
      state.cursor = [Math.round(c[0]), Math.round(c[1])];
      state.k = t.lesion_slices[hit];
    }
    render();
    panels[j].fig.scrollIntoView({ block: 'nearest' });
  }
  function fromHash() {
    var h = (location.hash || '').replace(/^#/, ''), q = {};
    h.split('&').forEach(function (kv) { var p = kv.split('='); if (p[0]) { q[decodeURIComponent(p[0])] = decodeURIComponent(p[1] || ''); } });
    if (q.t === undefined && q.lesion === undefined) { return; }
    var j = 0;
    if (q.t !== undefined) { T.forEach(function (t, i) { if (String(t.timepoint) === q.t) { j = i; } }); }
    jump(j, q.lesion || null);
  }

  function wire() {
    document.getElementById('mk-slice').addEventListener('input', function (e) { setSlice(parseInt(e.target.value, 10)); });
    document.querySelectorAll('input[name="mk-win"]').forEach(function (r) {
      r.addEventListener('change', function () { if (r.checked) { state.win = r.value; render(); } });
    });
    ['contour', 'probability', 'attention'].forEach(function (name) {
      document.getElementById('mk-' + name).addEventListener('change', function (e) { state[name] = e.target.checked; render(); });
    });
    document.querySelectorAll('input[name="mk-view"]').forEach(function (r) {
      r.addEventListener('change', function () { if (r.checked) { setView(r.value === 'all' ? 'all' : parseInt(r.value, 10)); } });
    });
    var area = document.getElementById('mk-panels');
    area.addEventListener('wheel', function (e) {
      e.preventDefault();
      if (e.deltaY !== 0) { setSlice(state.k + (e.deltaY > 0 ? 1 : -1)); }
    }, { passive: false });
    panels.forEach(function (p) {
      var at = function (e) {
        var r = p.canvas.getBoundingClientRect();
        var y = Math.floor((e.clientY - r.top) / r.height * NY), x = Math.floor((e.clientX - r.left) / r.width * NX);
        if (y >= 0 && y < NY && x >= 0 && x < NX) { state.cursor = [y, x]; render(); }
      };
      p.canvas.addEventListener('mousemove', at);
      p.canvas.addEventListener('click', function (e) { at(e); area.focus(); });
    });
    document.querySelectorAll('tr.mk-row').forEach(function (row) {
      var go = function () { jump(parseInt(row.getAttribute('data-tp'), 10), row.getAttribute('data-lesion') || null); };
      row.addEventListener('click', go);
      row.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); } });
    });
    document.addEventListener('keydown', function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey) { return; }
      var tag = (e.target && e.target.tagName) || '';
      var nav = ['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'PageUp', 'PageDown', 'Home', 'End'];
      if (nav.indexOf(e.key) >= 0 && (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA')) { return; }
      var done = true;
      if (e.shiftKey && e.key.indexOf('Arrow') === 0) {
        moveCursor(e.key === 'ArrowUp' ? -1 : (e.key === 'ArrowDown' ? 1 : 0),
          e.key === 'ArrowLeft' ? -1 : (e.key === 'ArrowRight' ? 1 : 0));
      } else if (e.key === 'ArrowUp' || e.key === 'ArrowRight') { setSlice(state.k + 1); }
      else if (e.key === 'ArrowDown' || e.key === 'ArrowLeft') { setSlice(state.k - 1); }
      else if (e.key === 'PageUp') { setSlice(state.k + 5); }
      else if (e.key === 'PageDown') { setSlice(state.k - 5); }
      else if (e.key === 'Home') { setSlice(0); }
      else if (e.key === 'End') { setSlice(NZ - 1); }
      else if (e.key === 'w' || e.key === 'W') { setWindow(state.win === 'lung' ? 'mediastinum' : 'lung'); }
      else if (e.key === 'c' || e.key === 'C') { toggle('contour'); }
      else if (e.key === 'p' || e.key === 'P') { toggle('probability'); }
      else if (e.key === 'a' || e.key === 'A') { toggle('attention'); }
      else if (e.key === '0') { setView('all'); }
      else if (/^[1-9]$/.test(e.key) && parseInt(e.key, 10) <= T.length) { setView(parseInt(e.key, 10) - 1); }
      else { done = false; }
      if (done) { e.preventDefault(); }
    });
    window.addEventListener('hashchange', fromHash);
    window.addEventListener('resize', render);
  }

  if (typeof DecompressionStream === 'undefined') {
    root.textContent = 'This browser cannot decompress the embedded images (no DecompressionStream): ' +
      'open the page in a current Chrome, Edge, Firefox or Safari.';
    return;
  }
  Promise.all(T.map(function (t) {
    return Promise.all([inflate(t.ct), inflate(t.mask), inflate(t.probability), inflate(t.attention)])
      .then(function (r) { return { ct: r[0], mask: r[1], probability: r[2], attention: r[3] }; });
  })).then(function (a) {
    arrays = a;
    build();
    wire();
    render();
    fromHash();
    root.setAttribute('data-ready', '1');
  }).catch(function (err) {
    root.textContent = 'The viewer could not read its data: ' + err;
    root.setAttribute('data-ready', 'error');
    throw err;
  });
})();
