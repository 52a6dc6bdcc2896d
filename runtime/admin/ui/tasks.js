// The tasks page: GET /grid/tasks filtered by state, node, kind and time, newest first, one page at
// a time (the API's cursor). The filters live in the hash, so a filtered view can be linked to (the
// jobs page links to its kind).

import { get, withQuery } from './api.js';
import { badge, duration, fill, h, time } from './dom.js';

const STATES = ['pending', 'assigned', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'];
const LIMITS = ['25', '50', '100', '500'];

/** A `datetime-local` value for a Unix time in ms, and back. */
function toLocal(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromLocal(value) {
  if (!value) return '';
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? '' : String(ms);
}

function lastAttempt(task) {
  return task.attempts.length ? task.attempts[task.attempts.length - 1] : null;
}

function row(task) {
  const attempt = lastAttempt(task);
  const ended = attempt?.ended_ms;
  const started = attempt?.started_ms;
  return h('tr', { dataset: { task: task.id, state: task.state } },
    h('td', { class: 'num' }, h('a', { href: `#/task/${task.id}` }, String(task.id))),
    h('td', { class: 'mono' }, task.task),
    h('td', {}, badge(task.state), task.unplaceable ? h('span', { class: 'tag warn', title: 'no registered node runs this kind' }, 'unplaceable') : null),
    h('td', { class: 'num' }, String(task.priority)),
    h('td', { class: 'num' }, attempt ? String(attempt.node) : '-'),
    h('td', { class: 'num' }, String(task.attempts.length)),
    h('td', {}, time(task.submitted_ms)),
    h('td', { class: 'num' }, started ? duration((ended ?? Date.now()) - started) : '-'),
    h('td', { class: 'error-cell' }, attempt?.error ? attempt.error.slice(0, 120) : ''));
}

export function mount(root, { params }, ctx) {
  const current = Object.fromEntries(params.entries());
  const field = (name, input) => h('label', {}, h('span', {}, name), input);
  const state = h('select', { name: 'state', id: 'filter-state' }, h('option', { value: '' }, 'any'), STATES.map((name) => h('option', { value: name }, name)));
  state.value = current.state || '';
  const node = h('input', { name: 'node', id: 'filter-node', type: 'number', min: 1, value: current.node || '', placeholder: 'any' });
  const kind = h('input', { name: 'kind', id: 'filter-kind', type: 'text', value: current.kind || '', placeholder: 'any', maxlength: 256 });
  const since = h('input', { name: 'since', id: 'filter-since', type: 'datetime-local', value: toLocal(current.since_ms) });
  const until = h('input', { name: 'until', id: 'filter-until', type: 'datetime-local', value: toLocal(current.until_ms) });
  const limit = h('select', { name: 'limit', id: 'filter-limit' }, LIMITS.map((n) => h('option', { value: n }, n)));
  limit.value = LIMITS.includes(current.limit) ? current.limit : '50';
  const apply = (event) => {
    event.preventDefault();
    ctx.navigate(withQuery('#/tasks', {
      state: state.value,
      node: node.value,
      kind: kind.value.trim(),
      since_ms: fromLocal(since.value),
      until_ms: fromLocal(until.value),
      limit: limit.value,
    }));
  };
  const form = h('form', { class: 'filters', id: 'task-filters', on: { submit: apply } },
    field('State', state), field('Node', node), field('Kind', kind), field('Active since', since), field('Submitted until', until),
    field('Per page', limit),
    h('button', { type: 'submit', id: 'filter-apply' }, 'Apply'),
    h('a', { href: '#/tasks', class: 'button-link' }, 'Clear'));
  const body = h('div', { id: 'tasks-body' });
  const pager = h('div', { class: 'pager' });
  root.append(h('h1', {}, 'Tasks'), form, body, pager);

  // Cursors of the pages before this one, so "Newer" can go back.
  const cursors = [];
  let cursor = current.cursor || null;
  let next = null;

  function renderPager() {
    fill(pager,
      h('button', { type: 'button', id: 'page-newer', disabled: cursors.length === 0, on: { click: () => { cursor = cursors.pop() ?? null; reload(); } } }, '← Newer'),
      h('span', { class: 'muted' }, cursors.length === 0 ? 'newest first' : `page ${cursors.length + 1}`),
      h('button', { type: 'button', id: 'page-older', disabled: next === null, on: { click: () => { cursors.push(cursor); cursor = String(next); reload(); } } }, 'Older →'));
  }

  async function refresh() {
    const page = await get(withQuery('/grid/tasks', {
      state: current.state,
      node: current.node,
      kind: current.kind,
      since_ms: current.since_ms,
      until_ms: current.until_ms,
      limit: LIMITS.includes(current.limit) ? current.limit : '50',
      cursor,
    }));
    next = page.next ?? null;
    fill(body, page.tasks.length === 0
      ? h('p', { class: 'muted', id: 'tasks-empty' }, 'No task matches.')
      : h('table', { id: 'tasks-table', class: 'grid' },
        h('thead', {}, h('tr', {}, ['ID', 'Kind', 'State', 'Priority', 'Node', 'Attempts', 'Submitted', 'Ran', 'Last error'].map((title) => h('th', {}, title)))),
        h('tbody', {}, page.tasks.map(row))));
    renderPager();
  }
  function reload() {
    refresh().catch((error) => ctx.notice(`Refresh failed: ${error.message}`));
  }
  renderPager();
  return { refresh };
}
