// The console's policy view, for policy admins: what each peer may receive
// now, and what it would receive under a draft, before the draft is saved.
(function () {
  'use strict';
  var sv = document.documentElement.lang !== 'en';
  function t(swedish, english) { return sv ? swedish : english; }
  var peer = document.getElementById('peer');
  var draft = document.getElementById('draft');
  var now = document.getElementById('now');
  var would = document.getElementById('would');
  var status = document.getElementById('status');

  function call(method, url, body) {
    var options = { method: method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) { throw new Error(data.error || ('HTTP ' + r.status)); }
        return data;
      });
    });
  }

  function fail(e) {
    status.textContent = e.message;
    document.body.setAttribute('data-error', e.message);
  }

  function explainNow() {
    if (!peer.value) { return; }
    call('GET', '/api/v1/policy/explain?peer=' + encodeURIComponent(peer.value))
      .then(function (answer) { now.textContent = answer.text; })
      .catch(fail);
  }

  call('GET', '/api/v1/partners').then(function (status) {
    status.peers.forEach(function (p) {
      var option = document.createElement('option');
      option.value = p.org;
      option.textContent = p.org;
      peer.appendChild(option);
    });
    explainNow();
  }).catch(fail);
  call('GET', '/api/v1/policy').then(function (answer) {
    draft.value = answer.text;
    document.body.setAttribute('data-loaded', 'yes');
  }).catch(fail);

  peer.addEventListener('change', explainNow);
  document.getElementById('preview').addEventListener('click', function () {
    status.textContent = '…';
    call('POST', '/api/v1/policy/preview', { draft: draft.value, peer: peer.value })
      .then(function (answer) {
        would.textContent = answer.text;
        status.textContent = t('Förhandsgranskat; inget sparat.', 'Previewed; nothing saved.');
        document.body.setAttribute('data-previewed', 'yes');
      })
      .catch(fail);
  });
  document.getElementById('save').addEventListener('click', function () {
    status.textContent = '…';
    call('PUT', '/api/v1/policy', { draft: draft.value })
      .then(function (answer) {
        status.textContent = t('Sparad; gäller nu. Partner: ', 'Saved; in force now. Peers: ') + answer.peers;
        document.body.setAttribute('data-saved', String(answer.peers));
        explainNow();
      })
      .catch(fail);
  });
}());
