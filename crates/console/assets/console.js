// The console's map: the federated picture on the SWEREF 99 TM grid over
// an offline map of the named places. Everything comes from this node's own
// API (same origin); nothing is fetched from anywhere else.
(function () {
  'use strict';
  var sv = document.documentElement.lang !== 'en';
  function t(swedish, english) { return sv ? swedish : english; }
  var status = document.getElementById('status');
  var answers = document.getElementById('answers');
  var map = L.map('map', { preferCanvas: true, zoomControl: true }).setView([59.3340, 18.0630], 15);
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
  var cellsLayer = L.layerGroup().addTo(map);

  var WINDOWS = { '24h': 24 * 3600e3, week: 7 * 24 * 3600e3, month: 30 * 24 * 3600e3 };

  function colour(share) {
    // Light yellow to dark red, readable on white.
    var stops = [[255, 237, 160], [254, 178, 76], [240, 59, 32], [128, 0, 38]];
    var x = Math.max(0, Math.min(1, share)) * (stops.length - 1);
    var i = Math.min(stops.length - 2, Math.floor(x));
    var t = x - i;
    var c = stops[i].map(function (v, k) { return Math.round(v + (stops[i + 1][k] - v) * t); });
    return 'rgb(' + c.join(',') + ')';
  }

  function get(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) { throw new Error(body.error || ('HTTP ' + r.status)); }
          return body;
        });
      });
  }

  get('/api/v1/places').then(function (body) {
    body.places.forEach(function (p) {
      L.circleMarker([p.lat, p.lon], { radius: 3, color: '#1f3a68', weight: 1, fillOpacity: 0.8 })
        .bindTooltip(p.name + ' (' + p.kind + ')')
        .addTo(placesLayer);
    });
  }).catch(function (e) { status.textContent = e.message; });

  // What one cell holds: per category, who gave their part, who withheld it.
  function cellDetail(e) {
    var box = document.createElement('div');
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
    trend.setAttribute('aria-label', t('Trend, veckor', 'Trend, weeks'));
    box.appendChild(trend);
    var to = new Date();
    var from = new Date(to.getTime() - 8 * 7 * 24 * 3600e3);
    var cell = document.getElementById('cell').value;
    get('/api/v1/picture?bucket=week&cell=' + encodeURIComponent(cell) +
        '&from=' + encodeURIComponent(from.toISOString().replace(/\.\d{3}Z$/, 'Z')) +
        '&to=' + encodeURIComponent(to.toISOString().replace(/\.\d{3}Z$/, 'Z')))
      .then(function (picture) {
        var weeks = new Map();
        picture.cells.forEach(function (c) {
          if (c.easting + ':' + c.northing !== e.key) { return; }
          weeks.set(c.bucket_start, (weeks.get(c.bucket_start) || 0) + c.count);
        });
        var values = Array.from(weeks.keys()).sort().map(function (k) { return weeks.get(k); });
        trend.setAttribute('id', 'trend-' + e.key.replace(':', '-'));
        trend.textContent = values.length ? '' : t('Inget släppt de senaste veckorna', 'Nothing released in the last weeks');
        var max = Math.max.apply(null, values.concat([1]));
        values.forEach(function (v) {
          var bar = document.createElement('div');
          bar.className = 'bar';
          bar.title = String(v);
          bar.style.height = Math.round(100 * v / max) + '%';
          trend.appendChild(bar);
        });
      })
      .catch(function (err) { trend.textContent = err.message; });
    return box;
  }

  // Hour-of-day bars, released counts.
  function chart(id, values) {
    var box = document.getElementById(id);
    box.textContent = '';
    var max = Math.max.apply(null, values.concat([1]));
    values.forEach(function (v, hour) {
      var bar = document.createElement('div');
      bar.className = 'bar';
      bar.title = hour + ': ' + v;
      bar.style.height = Math.round(100 * v / max) + '%';
      box.appendChild(bar);
    });
  }

  function partners() {
    get('/api/v1/partners').then(function (status) {
      var body = document.querySelector('#partners tbody');
      body.textContent = '';
      status.peers.forEach(function (p) {
        var row = document.createElement('tr');
        [p.org, p.role, p.reachable ? t('ja', 'yes') : (p.endpoint ? t('nej', 'no') : '-'),
         p.reachable ? p.rtt_ms.toFixed(1) + ' ms' : '', p.version,
         p.witness_alarm || p.error || ''].forEach(function (text) {
          var td = document.createElement('td');
          td.textContent = text;
          row.appendChild(td);
        });
        body.appendChild(row);
      });
      document.body.setAttribute('data-partners', String(status.peers.length));
      // A policy admin also sees the privacy budget each peer has left here today.
      status.peers.forEach(function (p, i) {
        get('/api/v1/policy/explain?peer=' + encodeURIComponent(p.org)).then(function (answer) {
          var noise = answer.explanation && answer.explanation.noise;
          var row = body.children[i];
          if (!row) { return; }
          var td = document.createElement('td');
          td.textContent = noise ? (t('ε kvar i dag: ', 'ε left today: ') + noise.left_today) : t('ingen budget', 'no budget');
          row.appendChild(td);
        }).catch(function () { /* not a policy admin: no budget column */ });
      });
    }).catch(function (e) { document.getElementById('partners-status').textContent = e.message; });
  }
  partners();
  setInterval(partners, 30000);

  function load() {
    var span = WINDOWS[document.getElementById('window').value] || WINDOWS.month;
    var to = new Date();
    var from = new Date(to.getTime() - span);
    var cell = document.getElementById('cell').value;
    var category = document.getElementById('category').value;
    var url = '/api/v1/picture?bucket=day&cell=' + encodeURIComponent(cell) +
      '&from=' + encodeURIComponent(from.toISOString().replace(/\.\d{3}Z$/, 'Z')) +
      '&to=' + encodeURIComponent(to.toISOString().replace(/\.\d{3}Z$/, 'Z')) +
      (category ? '&categories=' + encodeURIComponent(category) : '');
    status.textContent = '…';
    document.body.removeAttribute('data-cells');
    get(url).then(function (picture) {
      var byCell = new Map();
      picture.cells.forEach(function (c) {
        var key = c.easting + ':' + c.northing;
        var entry = byCell.get(key);
        if (!entry) {
          entry = { key: key, corners: c.corners, count: 0, categories: {}, contributors: {}, withheld: {} };
          byCell.set(key, entry);
        }
        entry.count += c.count;
        entry.categories[c.category] = (entry.categories[c.category] || 0) + c.count;
        c.contributors.forEach(function (o) { entry.contributors[o] = true; });
        c.withheld_by.forEach(function (o) { entry.withheld[o] = true; });
      });
      var max = 0;
      byCell.forEach(function (e) { max = Math.max(max, e.count); });
      cellsLayer.clearLayers();
      byCell.forEach(function (e) {
        L.polygon(e.corners, { weight: 0.5, color: '#333', fillColor: colour(max ? e.count / max : 0), fillOpacity: 0.65 })
          .bindTooltip(String(e.count))
          .bindPopup(function () { return cellDetail(e); })
          .addTo(cellsLayer);
      });
      answers.textContent = '';
      picture.answers.forEach(function (a) {
        var li = document.createElement('li');
        li.textContent = a.org + ': ' + a.status + (a.reason ? ' (' + a.reason + ')' : '') +
          ', ' + a.values + ' values, ' + a.latency_ms.toFixed(0) + ' ms';
        answers.appendChild(li);
      });
      chart('hours', picture.hour_of_day);
      chart('week-hours', picture.hour_of_week);
      status.textContent = byCell.size + t(' rutor, ', ' cells, ') + picture.cells.length + t(' släppta värden', ' released values');
      document.body.setAttribute('data-cells', String(byCell.size));
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
  var shown = new Map();
  var notify = document.getElementById('notify');
  notify.addEventListener('change', function () {
    if (notify.checked && window.Notification && Notification.permission !== 'granted') {
      Notification.requestPermission();
    }
  });
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
      alert.textContent = 'ALERT ' + a.rule + ' → ' + a.playbook;
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
    shown.set(e.id, { item: li, marker: marker });
    if (notify.checked && e.alerts.length && window.Notification && Notification.permission === 'granted') {
      new Notification('Lägesbild: ' + e.alerts[0].rule, { body: e.org + ', ' + e.category + (e.near ? ' near ' + e.near : '') });
    }
  }
  function recall(r) {
    var entry = shown.get(r.id);
    if (!entry) { return; }
    entry.item.remove();
    if (entry.marker) { eventsLayer.removeLayer(entry.marker); }
    shown.delete(r.id);
  }
  if (window.EventSource) {
    var source = new EventSource('/api/v1/events');
    source.addEventListener('open', function () { live.textContent = t('direkt', 'live'); document.body.setAttribute('data-live', 'open'); });
    source.addEventListener('error', function () { live.textContent = t('ansluter igen…', 'reconnecting…'); });
    source.addEventListener('event', function (m) { showEvent(JSON.parse(m.data)); });
    source.addEventListener('recall', function (m) { recall(JSON.parse(m.data)); });
  }

  ['window', 'cell', 'category'].forEach(function (id) {
    document.getElementById(id).addEventListener('change', load);
  });
  load();
}());
