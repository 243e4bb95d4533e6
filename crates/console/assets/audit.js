// The console's view of the node's access log, for its auditors: the newest
// entries that match the filters, from the node's own API.
(function () {
  'use strict';
  var form = document.getElementById('filters');
  var status = document.getElementById('status');
  var body = document.querySelector('#entries tbody');
  var exportLink = document.getElementById('export');

  function query() {
    var params = new URLSearchParams();
    ['org', 'person', 'purpose'].forEach(function (name) {
      var value = document.getElementById(name).value.trim();
      if (value) { params.set(name, value); }
    });
    // The time filters are the browser's local time; the API takes RFC 3339.
    ['from', 'to'].forEach(function (name) {
      var value = document.getElementById(name).value;
      var at = value ? new Date(value) : null;
      if (at && !isNaN(at.getTime())) { params.set(name, at.toISOString().replace(/\.\d{3}Z$/, 'Z')); }
    });
    params.set('limit', '200');
    return params;
  }

  function cell(row, text) {
    var td = document.createElement('td');
    td.textContent = text;
    row.appendChild(td);
  }

  function load() {
    var params = query();
    var exportParams = new URLSearchParams(params);
    exportParams.set('limit', '1000');
    exportLink.href = '/api/v1/audit/entries?' + exportParams.toString();
    status.textContent = '…';
    fetch('/api/v1/audit/entries?' + params.toString(), { credentials: 'same-origin' })
      .then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) { throw new Error(data.error || ('HTTP ' + r.status)); }
          return data;
        });
      })
      .then(function (data) {
        body.textContent = '';
        data.entries.slice().reverse().forEach(function (e) {
          var row = document.createElement('tr');
          row.setAttribute('data-index', String(e.index));
          cell(row, String(e.index));
          cell(row, new Date(e.time_micros / 1000).toISOString());
          cell(row, e.direction);
          cell(row, e.peer_org);
          cell(row, e.token.act ? e.token.sub + ' for ' + e.token.act : e.token.sub);
          cell(row, e.call);
          cell(row, e.decision);
          cell(row, e.reason);
          body.appendChild(row);
        });
        status.textContent = data.entries.length + ' of ' + data.size + ' entries';
        document.body.setAttribute('data-entries', String(data.entries.length));
      })
      .catch(function (e) {
        status.textContent = e.message;
        document.body.setAttribute('data-error', e.message);
      });
  }

  // The log's checkpoints, checked by the node against its log key and by
  // consistency proofs, and what it has witnessed of its peers' logs.
  function state() {
    fetch('/api/v1/audit/state', { credentials: 'same-origin' })
      .then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) { throw new Error(data.error || ('HTTP ' + r.status)); }
          return data;
        });
      })
      .then(function (data) {
        document.getElementById('latest').textContent = data.latest.size + ' ' +
          document.getElementById('latest').getAttribute('data-entries') + ', ' +
          document.getElementById('latest').getAttribute('data-signature') + ' ' + data.latest.signature;
        var kept = document.querySelector('#kept tbody');
        kept.textContent = '';
        data.kept.forEach(function (k) {
          var row = document.createElement('tr');
          cell(row, String(k.size));
          cell(row, k.signature);
          cell(row, k.consistent_with_latest);
          kept.appendChild(row);
        });
        var witnessed = document.querySelector('#witnessed tbody');
        witnessed.textContent = '';
        data.witnessed.forEach(function (w) {
          var row = document.createElement('tr');
          cell(row, w.org);
          cell(row, String(w.size));
          cell(row, w.seen_at || '');
          cell(row, w.alarm ? w.alarm_reason : 'ok');
          witnessed.appendChild(row);
        });
        document.body.setAttribute('data-checkpoints', String(data.kept.length));
      })
      .catch(function (e) { document.getElementById('latest').textContent = e.message; });
  }

  form.addEventListener('submit', function (event) { event.preventDefault(); load(); });
  load();
  state();
}());
