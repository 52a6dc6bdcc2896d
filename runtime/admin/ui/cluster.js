// The cluster page: this node's view of the members (/status, /members), the leader, the Raft
// indexes, this node's readiness (/ready), and the grid's recent throughput (/grid/summary).

import { call, get } from './api.js';
import { duration, fill, h, sparkline } from './dom.js';

const STATES = ['pending', 'assigned', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'];

function fact(label, id, value) {
  return h('div', { class: 'fact' }, h('span', { class: 'label' }, label), h('span', { class: 'value', id }, value));
}

function memberRows(status, members) {
  const byId = new Map();
  for (const row of members?.members || []) byId.set(row.id, { id: row.id, addr: row.addr, role: row.role, alive: row.alive, lag: row.lag });
  for (const row of status?.members || []) {
    const known = byId.get(row.id) || { id: row.id, addr: row.addr, role: null, lag: null };
    byId.set(row.id, { ...known, alive: row.alive, seen: row.last_seen_ms, slots: row.slots, running: row.running, load: row.load });
  }
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

function dash(value) {
  return value === undefined || value === null ? '-' : value;
}

function membersTable(rows, leader, self) {
  return h('table', { id: 'members', class: 'grid' },
    h('thead', {}, h('tr', {}, ['ID', 'Address', 'Role', 'Alive', 'Lag', 'Last heard', 'Slots', 'Running', 'Load'].map((title) => h('th', {}, title)))),
    h('tbody', {}, rows.map((row) => h('tr', { dataset: { member: row.id, alive: row.alive }, class: row.alive ? '' : 'down' },
      h('td', {}, String(row.id), row.id === leader ? h('span', { class: 'tag leader' }, 'leader') : null,
        row.id === self ? h('span', { class: 'tag self' }, 'this node') : null),
      h('td', { class: 'mono' }, dash(row.addr)),
      h('td', {}, dash(row.role)),
      h('td', { class: row.alive ? 'alive up' : 'alive down' }, row.alive ? 'up' : 'down'),
      h('td', { class: 'num' }, dash(row.lag)),
      h('td', { class: 'num' }, row.id === self ? '-' : row.seen === undefined || row.seen === null ? 'never' : `${duration(row.seen)} ago`),
      h('td', { class: 'num' }, dash(row.slots)),
      h('td', { class: 'num' }, dash(row.running)),
      h('td', { class: 'num' }, row.load === undefined || row.load === null ? '-' : `${Math.round(row.load * 100)} %`)))));
}

function throughput(summary) {
  const seconds = summary.bucket_ms / 1000;
  const recent = summary.recent || {};
  const zeros = new Array((recent.succeeded || []).length).fill(0);
  const succeeded = (recent.succeeded || zeros).map((count) => count / seconds);
  const failed = zeros.map((_, index) => (recent.failed?.[index] || 0) + (recent.timed_out?.[index] || 0));
  const failureRate = zeros.map((_, index) => {
    const ended = (recent.succeeded?.[index] || 0) + failed[index];
    return ended ? failed[index] / ended : 0;
  });
  const last = (values) => values.length ? values[values.length - 1] : 0;
  const window = `${Math.round((summary.bucket_ms * zeros.length) / 1000)} s`;
  return h('div', { class: 'sparks' },
    h('div', { class: 'spark-box', id: 'throughput' },
      h('span', { class: 'label' }, `Succeeded per second, last ${window}`),
      sparkline(succeeded, { label: 'tasks succeeded per second', kind: 'good' }),
      h('span', { class: 'value' }, `${last(succeeded).toFixed(1)}/s now`)),
    h('div', { class: 'spark-box', id: 'failure-rate' },
      h('span', { class: 'label' }, `Failure rate (failed and timed out), last ${window}`),
      sparkline(failureRate, { label: 'share of ended tasks that failed', kind: 'bad', max: 1 }),
      h('span', { class: 'value' }, `${Math.round(last(failureRate) * 100)} % now`)));
}

function stateCounts(summary) {
  return h('table', { id: 'task-states', class: 'grid compact' },
    h('thead', {}, h('tr', {}, STATES.map((state) => h('th', {}, h('a', { href: `#/tasks?state=${state}` }, state))))),
    h('tbody', {}, h('tr', {}, STATES.map((state) => h('td', { class: 'num', dataset: { state } }, dash(summary.states?.[state]))))));
}

export function mount(root) {
  root.append(h('h1', {}, 'Cluster'));
  const facts = h('div', { class: 'facts' });
  const members = h('section', {}, h('h2', {}, 'Members'));
  const grid = h('section', {}, h('h2', {}, 'Tasks'));
  root.append(facts, members, grid);
  const membersBody = h('div');
  const gridBody = h('div');
  members.append(membersBody);
  grid.append(gridBody);

  async function refresh() {
    const [status, memberList, ready, summary] = await Promise.allSettled([
      get('/status'),
      get('/members'),
      call('GET', '/ready', undefined, { anyStatus: true }),
      get('/grid/summary'),
    ]);
    if (status.status === 'rejected') throw status.reason;
    const s = status.value;
    const m = memberList.status === 'fulfilled' ? memberList.value : null;
    const leader = s.leader ?? m?.leader ?? null;
    let health = 'unknown';
    let healthClass = 'warn';
    if (ready.status === 'fulfilled' && ready.value.body) {
      health = ready.value.body.ready ? 'ready' : `not ready: ${ready.value.body.reason}`;
      healthClass = ready.value.body.ready ? 'ok' : 'bad';
    }
    fill(facts,
      fact('This node', 'self', String(s.node)),
      fact('Leader', 'leader', leader === null ? 'none' : String(leader)),
      fact('Term', 'term', dash(s.term)),
      fact('Commit index', 'commit', dash(s.commit_index)),
      fact('Applied index', 'applied', dash(s.applied_index)),
      fact('State version', 'state-version', dash(s.state_version)),
      h('div', { class: `fact health ${healthClass}` }, h('span', { class: 'label' }, 'Health (/ready)'), h('span', { class: 'value', id: 'health' }, health)));
    fill(membersBody,
      membersTable(memberRows(s, m), leader, s.node),
      memberList.status === 'rejected' ? h('p', { class: 'error' }, `Roles and lags unavailable: ${memberList.reason.message}`) : null);
    if (summary.status === 'fulfilled') {
      const sum = summary.value;
      fill(gridBody,
        h('p', { class: 'muted' }, `${sum.tasks} tasks held by this node's table; ${dash(sum.last_id)} submitted in all`,
          sum.scanned < sum.tasks ? ` (counts over the newest ${sum.scanned})` : ''),
        stateCounts(sum),
        throughput(sum));
    } else {
      fill(gridBody, h('p', { class: 'error' }, `Task summary unavailable: ${summary.reason.message}`));
    }
  }
  return { refresh };
}

