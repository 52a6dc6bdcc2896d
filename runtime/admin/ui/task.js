// One task: its state, attempt timeline, input and result previews (bounded, as text), its logs
// followed live (GET /grid/logs with `after`), and cancel or resubmit for tokens allowed to.

import { ApiError, get, noteSubmitDenied, post, submitDenied, withQuery } from './api.js';
import { badge, duration, errorLine, fill, h, preview, spanBar, time } from './dom.js';

/** Log lines kept on the page per attempt; older ones are dropped from the view. */
const LOG_LINES_SHOWN = 5000;
/** Characters of input or result shown. */
const PREVIEW_CHARS = 8192;
const TERMINAL = ['succeeded', 'failed', 'timed_out', 'cancelled'];

function timeMs(ms) {
  if (ms === undefined || ms === null) return '';
  return `${time(ms)}.${String(ms % 1000).padStart(3, '0')}`;
}

function timeline(task) {
  const start = task.submitted_ms;
  const ends = task.attempts.flatMap((a) => [a.assigned_ms, a.started_ms, a.ended_ms]).filter((t) => t !== null && t !== undefined);
  // A task that ended is drawn to its last event; one still going, to now.
  const end = Math.max(start + 1, ...ends, TERMINAL.includes(task.state) ? 0 : Date.now());
  const at = (ms) => (ms - start) / (end - start);
  return h('table', { id: 'attempts', class: 'grid' },
    h('thead', {}, h('tr', {}, ['#', 'Node', 'State', 'Assigned', 'Started', 'Ended', 'Ran', 'Timeline', 'Error'].map((title) => h('th', {}, title)))),
    h('tbody', {}, task.attempts.map((a) => {
      const running = a.ended_ms === null || a.ended_ms === undefined;
      const segments = [{ from: at(a.assigned_ms), to: at(a.started_ms ?? a.ended_ms ?? Date.now()), class: 'wait' }];
      if (a.started_ms) segments.push({ from: at(a.started_ms), to: at(a.ended_ms ?? Date.now()), class: `run state-${a.state}` });
      return h('tr', { dataset: { attempt: a.attempt, state: a.state } },
        h('td', { class: 'num' }, String(a.attempt)),
        h('td', { class: 'num' }, String(a.node)),
        h('td', {}, badge(a.state)),
        h('td', {}, timeMs(a.assigned_ms)),
        h('td', {}, a.started_ms ? `+${duration(a.started_ms - a.assigned_ms)}` : '-'),
        h('td', {}, a.ended_ms ? timeMs(a.ended_ms) : running ? 'running' : '-'),
        h('td', { class: 'num' }, a.started_ms ? duration((a.ended_ms ?? Date.now()) - a.started_ms) : '-'),
        h('td', {}, spanBar(segments)),
        h('td', { class: 'error-cell' }, a.error || ''));
    })));
}

/** The submission that repeats `task`: its kind, input, priority, timeout and retry policy. */
function resubmission(task) {
  const spec = task.spec;
  const body = { task: task.task, input: spec.input, priority: task.priority, timeout_ms: spec.timeout_ms, attempts: spec.attempts, backoff_ms: spec.backoff_ms };
  if (spec.key !== null && spec.key !== undefined) body.key = spec.key;
  if (spec.affinity !== null && spec.affinity !== undefined) body.affinity = spec.affinity;
  if (spec.strategy !== null && spec.strategy !== undefined) body.strategy = spec.strategy;
  return body;
}

export function mount(root, { arg, params }, ctx) {
  const id = /^\d{1,19}$/.test(arg) ? arg : null;
  if (!id) {
    root.append(h('h1', {}, 'Task'), h('p', { class: 'error' }, 'No such task id in the address.'));
    return { refresh: async () => {} };
  }
  const header = h('div', { class: 'task-head' });
  const actions = h('div', { class: 'actions', id: 'task-actions' });
  const attempts = h('section', {}, h('h2', {}, 'Attempts'));
  const attemptsBody = h('div');
  attempts.append(attemptsBody);
  const inputPre = h('pre', { id: 'input-preview', class: 'preview' });
  const resultPre = h('pre', { id: 'result-preview', class: 'preview' });
  const previews = h('section', { class: 'previews' },
    h('div', {}, h('h2', {}, 'Input'), inputPre),
    h('div', {}, h('h2', {}, 'Result'), resultPre));
  const logPicker = h('span', { class: 'log-picker' });
  const logStatus = h('p', { id: 'logs-status', class: 'muted' }, 'waiting for the first attempt');
  const logList = h('ol', { id: 'logs', class: 'logs' });
  const logs = h('section', {}, h('h2', {}, 'Logs ', logPicker), logStatus, logList);
  root.append(h('h1', {}, `Task ${id}`), header, actions, attempts, previews, logs);

  let task = null;
  let actionMessage = null;
  let busy = false;
  const pinned = params.get('attempt');
  let log = { attempt: null, after: null, ended: false, shown: 0 };

  function renderActions() {
    const denied = submitDenied();
    const terminal = task && TERMINAL.includes(task.state);
    const rkyv = task?.spec?.encoding === 'rkyv';
    fill(actions,
      h('button', { type: 'button', id: 'cancel', disabled: busy || !task || terminal || !!denied, title: denied || '', on: { click: cancel } }, 'Cancel task'),
      h('button', { type: 'button', id: 'resubmit', disabled: busy || !task || rkyv || !!denied, title: denied || (rkyv ? 'submitted through the Rust API: its input is rkyv' : ''), on: { click: resubmit } }, 'Resubmit'),
      denied ? h('span', { class: 'muted', id: 'actions-denied' }, `Actions disabled: ${denied}`) : null,
      actionMessage ? h('span', { id: 'action-message', class: actionMessage.error ? 'error' : 'ok' }, actionMessage.text) : null);
  }

  async function act(work) {
    busy = true;
    renderActions();
    try {
      await work();
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) noteSubmitDenied(error.message);
      actionMessage = { error: true, text: `Refused: ${error.message} (${error.code})` };
    } finally {
      busy = false;
      renderActions();
    }
  }

  function cancel() {
    act(async () => {
      const answer = await post('/grid/cancel', { ids: [Number(id)] }, { forbidden: 'throw' });
      actionMessage = answer.applied ? { text: 'Cancel applied.' } : { text: 'Nothing to cancel: the task had already ended.' };
      await refresh();
    });
  }

  function resubmit() {
    act(async () => {
      const answer = await post('/grid/submit', resubmission(task), { forbidden: 'throw' });
      ctx.navigate(`#/task/${answer.ids[0]}`);
    });
  }

  function renderHeader() {
    fill(header,
      h('div', { class: 'facts' },
        h('div', { class: 'fact' }, h('span', { class: 'label' }, 'Kind'), h('span', { class: 'value mono', id: 'task-kind' }, task.task)),
        h('div', { class: 'fact' }, h('span', { class: 'label' }, 'State'), h('span', { class: 'value', id: 'task-state', dataset: { state: task.state } }, badge(task.state))),
        h('div', { class: 'fact' }, h('span', { class: 'label' }, 'Priority'), h('span', { class: 'value' }, String(task.priority))),
        h('div', { class: 'fact' }, h('span', { class: 'label' }, 'Submitted'), h('span', { class: 'value' }, time(task.submitted_ms))),
        task.spec ? h('div', { class: 'fact' }, h('span', { class: 'label' }, 'Timeout / attempts'), h('span', { class: 'value' }, `${duration(task.spec.timeout_ms)} / ${task.spec.attempts}`)) : null,
        h('div', { class: 'fact' }, h('span', { class: 'label' }, 'Same kind'), h('span', { class: 'value' }, h('a', { href: withQuery('#/tasks', { kind: task.task }) }, 'all tasks')))),
      task.unplaceable ? h('p', { class: 'error' }, 'No registered node runs this kind: the task waits until one does (or fails past --unplaceable-timeout-ms).') : null);
  }

  function renderPicker() {
    fill(logPicker, task.attempts.map((a) => h('a', {
      href: `#/task/${id}?attempt=${a.attempt}`,
      class: a.attempt === log.attempt ? 'current' : '',
    }, `attempt ${a.attempt}`)));
  }

  function logLine(line) {
    const level = String(line.level || 'info').replace(/[^a-z]/g, '');
    return h('li', { class: `log-line level-${level}`, dataset: { seq: line.seq } },
      h('span', { class: 'ts' }, timeMs(line.ts_ms)),
      h('span', { class: 'level' }, level),
      h('span', { class: 'text' }, String(line.text)));
  }

  async function refreshLogs() {
    if (!task.attempts.length) return;
    const latest = task.attempts[task.attempts.length - 1].attempt;
    const wanted = pinned && /^\d+$/.test(pinned) ? Number(pinned) : latest;
    if (wanted !== log.attempt) {
      log = { attempt: wanted, after: null, ended: false, shown: 0 };
      logList.replaceChildren();
    }
    renderPicker();
    if (log.ended) return;
    let answer;
    try {
      answer = await get(withQuery('/grid/logs', { id, attempt: log.attempt, after: log.after ?? '' }), { forbidden: 'throw' });
    } catch (error) {
      logStatus.className = 'error';
      if (error.code === 'unavailable') logStatus.textContent = `Logs unavailable: ${error.message}`;
      else if (error.status === 404 && error.code === 'http 404') logStatus.textContent = 'This node does not serve task logs (no /grid/logs route).';
      else logStatus.textContent = `Logs cannot be read: ${error.message} (${error.code})`;
      return;
    }
    for (const line of answer.lines || []) {
      logList.append(logLine(line));
      log.shown += 1;
      log.after = line.seq;
    }
    while (logList.childElementCount > LOG_LINES_SHOWN) logList.firstElementChild.remove();
    log.ended = !!answer.ended;
    logStatus.className = 'muted';
    const where = answer.node !== undefined ? ` on node ${answer.node}` : '';
    const dropped = answer.truncated ? ' Older lines were dropped by the per-attempt bound.' : '';
    const cut = log.shown > LOG_LINES_SHOWN ? ` Showing the last ${LOG_LINES_SHOWN}.` : '';
    logStatus.textContent = `Attempt ${log.attempt}${where}: ${log.shown} lines, ${log.ended ? 'ended' : 'live'}.${dropped}${cut}`;
  }

  async function refresh() {
    const page = await get(`/grid/tasks?id=${id}`);
    task = page.tasks[0];
    renderHeader();
    renderActions();
    fill(attemptsBody, task.attempts.length ? timeline(task) : h('p', { class: 'muted' }, 'Not assigned yet.'));
    inputPre.textContent = task.spec ? preview(task.spec.input, PREVIEW_CHARS) : '(not shown by this node)';
    resultPre.textContent = task.result === null || task.result === undefined ? '(none)' : preview(task.result, PREVIEW_CHARS);
    await refreshLogs();
  }

  renderActions();
  return {
    refresh: () => refresh().catch((error) => {
      if (error.code === 'no task') {
        fill(header, errorLine(error));
        return;
      }
      throw error;
    }),
  };
}
