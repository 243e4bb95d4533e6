// The console's map: the federated picture on the SWEREF 99 TM grid over
// an offline map of the node's coverage and named places. Everything comes
// from this node's own API (same origin), or from the tile source its
// operator configured.
(function () {
  'use strict';
  var sv = document.documentElement.lang !== 'en';
  function t(swedish, english) { return sv ? swedish : english; }
  var status = document.getElementById('status');
  var answers = document.getElementById('answers');
  var map = L.map('map', { preferCanvas: true, zoomControl: true, keyboard: true }).setView([59.3340, 18.0630], 14);
  if (document.body.dataset.tiles) {
    L.tileLayer(document.body.dataset.tiles, {
      maxZoom: 19,
      // Leaflet shows the credit as HTML: give it text only.
      attribution: (document.body.dataset.attribution || '').replace(/[&<>"']/g, function (c) {
        return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
      })
    }).addTo(map);
  }
  var placesLayer = L.layerGroup().addTo(map);

  var HOUR = 3600e3;
  var WINDOWS = { '24h': 24 * HOUR, week: 7 * 24 * HOUR, month: 30 * 24 * HOUR };
  // The longest window shown hour by hour.
  var MAX_HOURLY = 31 * 24 * HOUR;

  // Light yellow to dark red, in eight steps: cells of one step are drawn
  // together, so 10,000 cells are eight fills.
  var STOPS = [[255, 237, 160], [254, 178, 76], [240, 59, 32], [128, 0, 38]];
  var STEPS = 8;
  var PALETTE = [];
  for (var s = 0; s < STEPS; s++) {
    var x = s / (STEPS - 1) * (STOPS.length - 1);
    var i = Math.min(STOPS.length - 2, Math.floor(x));
    var f = x - i;
    PALETTE.push('rgb(' + STOPS[i].map(function (v, k) { return Math.round(v + (STOPS[i + 1][k] - v) * f); }).join(',') + ')');
  }
  function step(share) { return Math.max(0, Math.min(STEPS - 1, Math.round(share * (STEPS - 1)))); }

  // Every cell of the picture as one canvas path: projected once per move or
  // zoom, drawn in one fill per colour step. Leaflet's canvas renderer moves
  // and scales the canvas while the map pans and zooms.
  var Cells = L.Path.extend({
    options: { interactive: false, stroke: false, fill: true },
    initialize: function () { this._cells = []; this._world = new Float64Array(0); this._xy = new Float64Array(0); },
    setCells: function (cells) {
      // The area of the cells shown so far is cleared, then the new drawn.
      if (this._map) { this._renderer._requestRedraw(this); }
      this._cells = cells;
      // Corners in world pixels at zoom 0, once: a move or zoom is then a
      // multiply and a subtract per corner, no trigonometry.
      var crs = L.CRS.EPSG3857;
      this._world = new Float64Array(cells.length * 8);
      for (var i = 0; i < cells.length; i++) {
        for (var k = 0; k < 4; k++) {
          var p = crs.latLngToPoint(L.latLng(cells[i].corners[k]), 0);
          this._world[i * 8 + k * 2] = p.x;
          this._world[i * 8 + k * 2 + 1] = p.y;
        }
      }
      if (this._map) { this._project(); this._renderer._requestRedraw(this); }
      return this;
    },
    _project: function () {
      var map = this._map, scale = map.getZoomScale(map.getZoom(), 0), origin = map.getPixelOrigin();
      var w = this._world, xy = this._xy = new Float64Array(w.length);
      var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
      for (var i = 0; i < w.length; i += 2) {
        var x = xy[i] = w[i] * scale - origin.x, y = xy[i + 1] = w[i + 1] * scale - origin.y;
        if (x < minX) { minX = x; } if (x > maxX) { maxX = x; }
        if (y < minY) { minY = y; } if (y > maxY) { maxY = y; }
      }
      this._pxBounds = w.length ? L.bounds([minX, minY], [maxX, maxY]) : L.bounds([0, 0], [0, 0]);
    },
    // The renderer draws every layer in its own pass (_updatePath while
    // _drawing); nothing is drawn outside it.
    _update: function () {},
    _updatePath: function () {
      var renderer = this._renderer, ctx = renderer._ctx;
      if (!ctx || !renderer._drawing) { return; }
      var view = renderer._bounds, xy = this._xy, cells = this._cells;
      var outline = cells.length && Math.abs(xy[2] - xy[0]) > 6;
      ctx.globalAlpha = 0.7;
      for (var s = 0; s < STEPS; s++) {
        ctx.beginPath();
        var any = false;
        for (var i = 0; i < cells.length; i++) {
          if (cells[i].step !== s) { continue; }
          var o = i * 8;
          // Cells wholly outside the canvas are not drawn.
          if (view && (Math.max(xy[o], xy[o + 2], xy[o + 4], xy[o + 6]) < view.min.x || Math.min(xy[o], xy[o + 2], xy[o + 4], xy[o + 6]) > view.max.x ||
              Math.max(xy[o + 1], xy[o + 3], xy[o + 5], xy[o + 7]) < view.min.y || Math.min(xy[o + 1], xy[o + 3], xy[o + 5], xy[o + 7]) > view.max.y)) { continue; }
          ctx.moveTo(xy[o], xy[o + 1]); ctx.lineTo(xy[o + 2], xy[o + 3]); ctx.lineTo(xy[o + 4], xy[o + 5]); ctx.lineTo(xy[o + 6], xy[o + 7]); ctx.closePath();
          any = true;
        }
        if (!any) { continue; }
        ctx.fillStyle = PALETTE[s];
        ctx.fill();
        if (outline) { ctx.globalAlpha = 1; ctx.lineWidth = 0.5; ctx.strokeStyle = '#333'; ctx.stroke(); ctx.globalAlpha = 0.7; }
      }
      ctx.globalAlpha = 1;
    },
    _empty: function () { return !this._cells.length; },
    _containsPoint: function () { return false; },
    // The cell under a layer point, if any.
    cellAt: function (p) {
      var xy = this._xy;
      for (var i = this._cells.length - 1; i >= 0; i--) {
        var o = i * 8;
        var quad = [0, 1, 2, 3].map(function (k) { return { x: xy[o + k * 2], y: xy[o + k * 2 + 1] }; });
        if (inside(p, quad)) { return this._cells[i]; }
      }
      return null;
    }
  });
  function inside(p, quad) {
    var hit = false;
    for (var i = 0, j = quad.length - 1; i < quad.length; j = i++) {
      if (((quad[i].y > p.y) !== (quad[j].y > p.y)) &&
          (p.x < (quad[j].x - quad[i].x) * (p.y - quad[i].y) / (quad[j].y - quad[i].y) + quad[i].x)) { hit = !hit; }
    }
    return hit;
  }
  var cellsLayer = new Cells().addTo(map);

  function get(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) { throw new Error(body.error || ('HTTP ' + r.status)); }
          return body;
        });
      });
  }
  function iso(date) { return date.toISOString().replace(/\.\d{3}Z$/, 'Z'); }

  get('/api/v1/places').then(function (body) {
    if (body.coverage) {
      var c = body.coverage;
      L.rectangle([[c.south, c.west], [c.north, c.east]], { color: '#1f3a68', weight: 2, dashArray: '6 4', fill: false, interactive: false })
        .addTo(placesLayer);
    }
    body.places.forEach(function (p) {
      L.circleMarker([p.lat, p.lon], { radius: 3, color: '#1f3a68', weight: 1, fillOpacity: 0.8 })
        .bindTooltip(p.name + ' (' + p.kind + ')')
        .addTo(placesLayer);
    });
  }).catch(function (e) { status.textContent = e.message; });

  // The picture shown: columns from the API, and its values summed per cell
  // for the whole window or for one hour of it.
  var shown = null;

  function summed(picture, hour) {
    var v = picture.values;
    var byCell = new Map();
    for (var i = 0; i < v.cell.length; i++) {
      if (hour !== null && v.bucket[i] !== hour) { continue; }
      var e = byCell.get(v.cell[i]);
      if (!e) {
        var g = picture.grid[v.cell[i]];
        e = { key: g.easting + ':' + g.northing, corners: g.corners, count: 0, categories: {}, contributors: {}, withheld: {} };
        byCell.set(v.cell[i], e);
      }
      e.count += v.count[i];
      var name = picture.categories[v.category[i]];
      e.categories[name] = (e.categories[name] || 0) + v.count[i];
      v.contributors[i].forEach(function (a) { e.contributors[picture.answers[a].org] = true; });
      v.withheld_by[i].forEach(function (a) { e.withheld[picture.answers[a].org] = true; });
    }
    return byCell;
  }

  function draw() {
    if (!shown) { return; }
    var hour = null;
    if (shown.hourly) {
      var slider = document.getElementById('hour');
      hour = shown.hours[Number(slider.value)] || null;
      document.getElementById('hour-label').textContent = hour === null ? '' :
        new Date(hour * 1000).toLocaleString(sv ? 'sv-SE' : 'en-GB', { timeZone: 'Europe/Stockholm', weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
    }
    var byCell = summed(shown.picture, hour);
    var max = 0;
    byCell.forEach(function (e) { max = Math.max(max, e.count); });
    var cells = [];
    byCell.forEach(function (e) { e.step = step(max ? e.count / max : 0); cells.push(e); });
    cellsLayer.setCells(cells);
    status.textContent = cells.length + t(' rutor, ', ' cells, ') + shown.picture.values.cell.length + t(' släppta värden', ' released values');
    document.body.setAttribute('data-cells', String(cells.length));
    if (!document.body.hasAttribute('data-first-paint')) {
      // When the first picture is on the map, from the start of navigation.
      requestAnimationFrame(function () {
        document.body.setAttribute('data-first-paint', String(Math.round(performance.now())));
      });
    }
  }

  map.on('click', function (e) {
    var cell = cellsLayer.cellAt(e.layerPoint);
    if (cell) { L.popup().setLatLng(e.latlng).setContent(cellDetail(cell)).openOn(map); }
  });
  // From the keyboard: Enter on the map opens the cell in its centre.
  map.getContainer().addEventListener('keydown', function (e) {
    if (e.key !== 'Enter') { return; }
    var centre = map.getCenter();
    var cell = cellsLayer.cellAt(map.latLngToLayerPoint(centre));
    status.textContent = cell ? '' : t('Ingen ruta i mitten av kartan.', 'No cell in the centre of the map.');
    if (cell) { L.popup().setLatLng(centre).setContent(cellDetail(cell)).openOn(map); }
  });

  // What one cell holds: per category, who gave their part, who withheld it,
  // and its released counts week by week over the last eight weeks.
  function cellDetail(e) {
    var box = document.createElement('div');
    box.className = 'cell-detail';
    box.setAttribute('data-cell', e.key);
    var list = document.createElement('ul');
    Object.keys(e.categories).sort().forEach(function (c) {
      var li = document.createElement('li');
      li.textContent = c + ': ' + e.categories[c];
      list.appendChild(li);
    });
    box.appendChild(list);
    var gave = document.createElement('p');
    gave.textContent = t('Bidrog: ', 'Gave: ') + (Object.keys(e.contributors).join(', ') || '-');
    box.appendChild(gave);
    var held = document.createElement('p');
    held.textContent = t('Höll inne: ', 'Withheld: ') + (Object.keys(e.withheld).join(', ') || '-');
    box.appendChild(held);
    var trend = document.createElement('div');
    trend.className = 'chart trend';
    trend.setAttribute('role', 'img');
    trend.setAttribute('aria-label', t('Trend, veckor', 'Trend, weeks'));
    box.appendChild(trend);
    var to = new Date();
    var from = new Date(to.getTime() - 8 * 7 * 24 * HOUR);
    var cell = document.getElementById('cell').value;
    get('/api/v1/picture?form=columns&bucket=week&cell=' + encodeURIComponent(cell) +
        '&from=' + encodeURIComponent(iso(from)) + '&to=' + encodeURIComponent(iso(to)))
      .then(function (picture) {
        var weeks = new Map();
        var v = picture.values;
        for (var i = 0; i < v.cell.length; i++) {
          var g = picture.grid[v.cell[i]];
          if (g.easting + ':' + g.northing !== e.key) { continue; }
          weeks.set(v.bucket[i], (weeks.get(v.bucket[i]) || 0) + v.count[i]);
        }
        var starts = Array.from(weeks.keys()).sort(function (a, b) { return a - b; });
        var values = starts.map(function (k) { return weeks.get(k); });
        trend.setAttribute('id', 'trend-' + e.key.replace(':', '-'));
        trend.setAttribute('data-weeks', values.join(','));
        trend.textContent = values.length ? '' : t('Inget släppt de senaste veckorna', 'Nothing released in the last weeks');
        var max = Math.max.apply(null, values.concat([1]));
        values.forEach(function (v, i) {
          var bar = document.createElement('div');
          bar.className = 'bar';
          bar.title = new Date(starts[i] * 1000).toISOString().slice(0, 10) + ': ' + v;
          bar.style.height = Math.round(100 * v / max) + '%';
          trend.appendChild(bar);
        });
      })
      .catch(function (err) { trend.textContent = err.message; });
    return box;
  }

  // Bars of released counts, with their values as text for screen readers.
  function chart(id, values, label) {
    var box = document.getElementById(id);
    box.textContent = '';
    var max = Math.max.apply(null, values.concat([1]));
    values.forEach(function (v, i) {
      var bar = document.createElement('div');
      bar.className = 'bar';
      bar.title = label(i) + ': ' + v;
      bar.style.height = Math.round(100 * v / max) + '%';
      box.appendChild(bar);
    });
    box.setAttribute('aria-label', box.getAttribute('data-title') + ': ' +
      values.map(function (v, i) { return label(i) + ' ' + v; }).join(', '));
  }
  var DAYS = sv ? ['mån', 'tis', 'ons', 'tor', 'fre', 'lör', 'sön'] : ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

  function partners() {
    get('/api/v1/partners').then(function (status) {
      var body = document.querySelector('#partners tbody');
      body.textContent = '';
      status.peers.forEach(function (p) {
        var row = document.createElement('tr');
        // The privacy budget each peer has left here today (ε), or exact counts.
        var budget = p.role !== 'member' ? '-' : p.budget_per_day ?
          (p.budget_left_today.toFixed(2) + t(' av ', ' of ') + p.budget_per_day.toFixed(2)) : t('exakta tal', 'exact counts');
        [p.org, p.role, p.reachable ? t('ja', 'yes') : (p.endpoint ? t('nej', 'no') : '-'),
         p.reachable ? p.rtt_ms.toFixed(1) + ' ms' : '', p.version, budget,
         p.witness_alarm || p.error || ''].forEach(function (text) {
          var td = document.createElement('td');
          td.textContent = text;
          row.appendChild(td);
        });
        body.appendChild(row);
      });
      document.body.setAttribute('data-partners', String(status.peers.length));
    }).catch(function (e) { document.getElementById('partners-status').textContent = e.message; });
  }
  partners();
  setInterval(partners, 30000);

  // The window asked for: the last 24 h, week or month, or the custom range.
  function window_() {
    var choice = document.getElementById('window').value;
    document.getElementById('custom').hidden = choice !== 'custom';
    if (choice === 'custom') {
      var from = new Date(document.getElementById('from').value);
      var to = new Date(document.getElementById('to').value);
      if (isNaN(from.getTime()) || isNaN(to.getTime()) || from >= to) {
        return { error: t('Välj en start före slutet.', 'Choose a start before the end.') };
      }
      return { from: from, to: to };
    }
    var to = new Date();
    return { from: new Date(to.getTime() - (WINDOWS[choice] || WINDOWS.month)), to: to };
  }

  var asked = 0;
  function load() {
    var w = window_();
    if (w.error) { status.textContent = w.error; return; }
    var hourly = document.getElementById('by-hour').checked;
    var slider = document.getElementById('hour');
    if (hourly && w.to - w.from > MAX_HOURLY) {
      status.textContent = t('Timme för timme visas högst 31 dagar.', 'Hour by hour shows at most 31 days.');
      return;
    }
    var cell = document.getElementById('cell').value;
    var category = document.getElementById('category').value;
    var url = '/api/v1/picture?form=columns&bucket=' + (hourly ? 'hour' : 'day') + '&cell=' + encodeURIComponent(cell) +
      '&from=' + encodeURIComponent(iso(w.from)) + '&to=' + encodeURIComponent(iso(w.to)) +
      (category ? '&categories=' + encodeURIComponent(category) : '');
    status.textContent = '…';
    document.body.removeAttribute('data-cells');
    var mine = ++asked;
    get(url).then(function (picture) {
      if (mine !== asked) { return; }
      var hours = [];
      if (hourly) {
        var start = Math.floor(w.from.getTime() / HOUR) * 3600;
        for (var h = start; h < w.to.getTime() / 1000; h += 3600) { hours.push(h); }
        slider.max = String(Math.max(0, hours.length - 1));
        if (Number(slider.value) > hours.length - 1) { slider.value = String(hours.length - 1); }
      }
      slider.disabled = !hourly;
      shown = { picture: picture, hourly: hourly, hours: hours, from: iso(w.from), to: iso(w.to) };
      draw();
      answers.textContent = '';
      picture.answers.forEach(function (a) {
        var li = document.createElement('li');
        li.textContent = a.org + ': ' + a.status + (a.reason ? ' (' + a.reason + ')' : '') +
          ', ' + a.values + t(' värden, ', ' values, ') + a.latency_ms.toFixed(0) + ' ms';
        answers.appendChild(li);
      });
      chart('hours', picture.hour_of_day, function (h) { return h + ':00'; });
      chart('week-hours', picture.hour_of_week, function (h) { return DAYS[Math.floor(h / 24)] + ' ' + (h % 24) + ':00'; });
    }).catch(function (e) {
      status.textContent = e.message;
      document.body.setAttribute('data-error', e.message);
    });
  }

  // Live events: the node's inbox as server-sent events. A recall takes its
  // event away; the browser reconnects on its own and resumes after the last.
  var eventsList = document.getElementById('events');
  var live = document.getElementById('live');
  var eventsLayer = L.layerGroup().addTo(map);
  var onScreen = new Map();
  var notify = document.getElementById('notify');
  var sound = document.getElementById('sound');
  notify.addEventListener('change', function () {
    if (notify.checked && window.Notification && Notification.permission !== 'granted') {
      Notification.requestPermission();
    }
  });
  var audio = null;
  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var osc = audio.createOscillator();
      osc.frequency.value = 880;
      osc.connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.2);
    } catch (e) { /* no sound here */ }
  }
  function showEvent(e) {
    var li = document.createElement('li');
    li.setAttribute('data-id', e.id);
    var head = document.createElement('strong');
    head.textContent = e.org + ': ' + e.category + t(', allvarlighet ', ', severity ') + e.severity + (e.near ? t(' nära ', ' near ') + e.near : '');
    li.appendChild(head);
    if (e.text) {
      var text = document.createElement('div');
      text.textContent = '"' + e.text + '"';
      li.appendChild(text);
    }
    e.alerts.forEach(function (a) {
      var alert = document.createElement('div');
      alert.className = 'alert';
      alert.textContent = t('LARM ', 'ALERT ') + a.rule + ' → ' + a.playbook;
      var steps = document.createElement('ol');
      a.actions.forEach(function (step) {
        var item = document.createElement('li');
        item.textContent = step;
        steps.appendChild(item);
      });
      alert.appendChild(steps);
      li.appendChild(alert);
    });
    eventsList.insertBefore(li, eventsList.firstChild);
    var marker = e.corners ? L.polygon(e.corners, { color: '#8b0000', weight: 2, fill: false }).addTo(eventsLayer) : null;
    onScreen.set(e.id, { item: li, marker: marker });
    // When it was on the page, for the bench's latency.
    li.setAttribute('data-shown-at', String(Date.now()));
    if (e.alerts.length && sound.checked) { beep(); }
    if (notify.checked && e.alerts.length && window.Notification && Notification.permission === 'granted') {
      new Notification('Lägesbild: ' + e.alerts[0].rule, { body: e.org + ', ' + e.category + (e.near ? ' near ' + e.near : '') });
    }
  }
  function recall(r) {
    var entry = onScreen.get(r.id);
    if (!entry) { return; }
    entry.item.remove();
    if (entry.marker) { eventsLayer.removeLayer(entry.marker); }
    onScreen.delete(r.id);
  }
  if (window.EventSource) {
    var source = new EventSource('/api/v1/events');
    source.addEventListener('open', function () { live.textContent = t('direkt', 'live'); document.body.setAttribute('data-live', 'open'); });
    source.addEventListener('error', function () { live.textContent = t('ansluter igen…', 'reconnecting…'); });
    source.addEventListener('event', function (m) { showEvent(JSON.parse(m.data)); });
    source.addEventListener('recall', function (m) { recall(JSON.parse(m.data)); });
  }

  ['window', 'cell', 'category', 'by-hour', 'from', 'to'].forEach(function (id) {
    document.getElementById(id).addEventListener('change', load);
  });
  document.getElementById('hour').addEventListener('input', draw);
  // For the bench and for scripts driving the page: the map and its cells.
  window.lagesbild = { map: map, cells: cellsLayer, shown: function () { return shown; } };
  load();
}());
