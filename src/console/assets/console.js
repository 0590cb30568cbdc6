// Tessera operator console: progressive enhancement only. Every page works without this file.
'use strict';

(function () {
  // Confirmations are rendered open (so they work without scripts); make them modal.
  function upgradeDialogs() {
    document.querySelectorAll('dialog[data-modal][open]').forEach(function (dialog) {
      dialog.close();
      dialog.showModal();
      dialog.addEventListener('cancel', function (event) {
        event.preventDefault();
        window.location.assign(dialog.getAttribute('data-cancel') || window.location.pathname);
      });
    });
  }

  function stepItem(step) {
    var li = document.createElement('li');
    var name = document.createElement('span');
    name.className = 'step';
    name.textContent = String(step.step || '');
    li.appendChild(name);
    if (typeof step.at === 'string') {
      var t = document.createElement('time');
      t.setAttribute('datetime', step.at);
      t.textContent = ' ' + step.at.slice(11, 19);
      li.appendChild(t);
    }
    if (typeof step.error === 'string') {
      var e = document.createElement('span');
      e.className = 'error-text';
      e.textContent = ' ' + step.error;
      li.appendChild(e);
    }
    return li;
  }

  function stateBadge(status) {
    var tone = { succeeded: 'ok', failed: 'bad', queued: 'info', running: 'info' }[status] || 'muted';
    var span = document.createElement('span');
    span.className = 'state ' + tone;
    span.textContent = status;
    return span;
  }

  function render(table, item) {
    var row = table.querySelector('tr[data-rotation-id="' + item.rotation_id + '"]');
    if (!row) return;
    var status = row.querySelector('[data-field="status"]');
    if (status.textContent.trim() !== item.status) status.replaceChildren(stateBadge(item.status));
    var steps = row.querySelector('[data-field="steps"]');
    var list = document.createElement('ol');
    list.className = 'steps';
    (Array.isArray(item.steps) ? item.steps : []).forEach(function (s) {
      list.appendChild(stepItem(s || {}));
    });
    var children = [list];
    if (item.error) {
      var p = document.createElement('p');
      p.className = 'error-text';
      p.textContent = item.error;
      children.push(p);
    }
    steps.replaceChildren.apply(steps, children);
    if (item.finished_at) {
      var finished = row.querySelector('[data-field="finished"]');
      var t = document.createElement('time');
      t.setAttribute('datetime', item.finished_at);
      t.textContent = item.finished_at.slice(0, 10) + ' ' + item.finished_at.slice(11, 19);
      finished.replaceChildren(t);
    }
  }

  // The rotations page follows each rotation's steps until every one has ended.
  function followRotations() {
    var table = document.querySelector('table[data-rotations]');
    if (!table) return;
    var progress = document.getElementById('rotations-progress');
    var query = table.getAttribute('data-rotations').split(',').map(function (id) {
      return 'id=' + encodeURIComponent(id);
    });
    var url = '/ui/api/rotations?' + query.join('&');
    function tick() {
      fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
        .then(function (res) {
          if (!res.ok) throw new Error('HTTP ' + res.status);
          return res.json();
        })
        .then(function (body) {
          body.items.forEach(function (item) {
            render(table, item);
          });
          if (body.done) {
            progress.textContent = 'All rotations have ended.';
            table.removeAttribute('data-rotations');
          } else {
            setTimeout(tick, 500);
          }
        })
        .catch(function (err) {
          progress.textContent = 'Live updates stopped (' + err.message + '); reload the page to see the latest state.';
        });
    }
    tick();
  }

  document.addEventListener('DOMContentLoaded', function () {
    upgradeDialogs();
    followRotations();
  });
})();
