// The console's shell: sign-in, hash routes (#/cluster, #/tasks, #/task/N, #/jobs, #/actors, #/registry),
// and the poller that refreshes the page shown every POLL_MS while the tab is visible.

import { ApiError, claims, clearToken, get, setToken, token, whenAuthLost } from './api.js';
import { fill, h } from './dom.js';
import * as cluster from './cluster.js';
import * as tasks from './tasks.js';
import * as task from './task.js';
import * as jobs from './jobs.js';
import * as actors from './actors.js';
import * as registry from './registry.js';

/** How often the page shown is refreshed while the tab is visible. */
const POLL_MS = 1500;

const pages = { cluster, tasks, task, jobs, actors, registry };
const $ = (id) => document.getElementById(id);

let generation = 0;
let wake = null;
let view = null;

/** The route in the hash: `#/task/12?attempt=2` → {name: 'task', arg: '12', params}. */
function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [route, query] = hash.split('?', 2);
  const [name, ...rest] = route.split('/');
  return { name: pages[name] ? name : 'cluster', arg: rest.join('/'), params: new URLSearchParams(query || '') };
}

function showNotice(message) {
  const notice = $('notice');
  notice.hidden = !message;
  notice.textContent = message || '';
}

function showLogin(message) {
  generation += 1;
  view = null;
  fill($('main'));
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('live').textContent = '';
  showNotice(null);
  $('login').hidden = false;
  const error = $('login-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('token').focus();
}

function showSignedIn() {
  $('login').hidden = true;
  $('nav').hidden = false;
  $('logout').hidden = false;
  const who = claims();
  $('who').textContent = who ? `${who.name} (${who.role})` : 'admin token';
}

function route() {
  if (!token()) {
    showLogin(null);
    return;
  }
  showSignedIn();
  const { name, arg, params } = parseHash();
  for (const link of document.querySelectorAll('#nav a')) {
    const current = link.dataset.page === name || (name === 'task' && link.dataset.page === 'tasks');
    link.classList.toggle('current', current);
  }
  const root = h('div', { class: `page page-${name}`, id: `page-${name}` });
  fill($('main'), root);
  showNotice(null);
  const ctx = { notice: showNotice, navigate: (hash) => { location.hash = hash; } };
  view = pages[name].mount(root, { arg, params }, ctx);
  generation += 1;
  poll(generation);
}

function sleep(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
}

/** Refreshes the current view until another route (a new generation) takes over. */
async function poll(mine) {
  while (mine === generation && view) {
    if (!document.hidden) {
      const started = performance.now();
      try {
        await view.refresh();
        if (mine !== generation) return;
        showNotice(null);
        $('live').textContent = `live · ${Math.round(performance.now() - started)} ms`;
        $('live').classList.remove('stale');
      } catch (error) {
        if (mine !== generation) return;
        if (error instanceof ApiError && error.status === 401) return;
        $('live').classList.add('stale');
        showNotice(`Refresh failed: ${error.message}${error.code ? ` (${error.code})` : ''}; retrying.`);
      }
    } else {
      $('live').textContent = 'paused (tab hidden)';
    }
    await sleep(POLL_MS);
  }
}

async function signIn(event) {
  event.preventDefault();
  const candidate = $('token').value.trim();
  const error = $('login-error');
  if (!candidate) {
    error.hidden = false;
    error.textContent = 'Paste a token first.';
    return;
  }
  $('login-submit').disabled = true;
  try {
    // The node decides: a token is accepted if it may read the cluster's status.
    await get('/status', { token: candidate, forbidden: 'throw' });
    setToken(candidate);
    $('token').value = '';
    error.hidden = true;
    if (!location.hash || location.hash === '#/login') location.hash = '#/cluster';
    else route();
  } catch (failure) {
    error.hidden = false;
    const code = failure.code ? ` (${failure.code})` : '';
    error.textContent = `Refused: ${failure.message}${code}`;
  } finally {
    $('login-submit').disabled = false;
  }
}

whenAuthLost((error) => {
  clearToken();
  showLogin(`Signed out: ${error.message} (${error.code})`);
});

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && wake) wake();
});
window.addEventListener('hashchange', route);
$('login-form').addEventListener('submit', signIn);
$('logout').addEventListener('click', () => {
  clearToken();
  showLogin('Signed out.');
});
route();
