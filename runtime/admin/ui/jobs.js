// The jobs page: every recurring job (GET /grid/jobs) with its cadence, zone, next due time, paused
// flag and recent runs, and pause, resume and trigger-now for tokens allowed to.

import { ApiError, get, noteSubmitDenied, post, submitDenied, withQuery } from './api.js';
import { duration, fill, h, time } from './dom.js';

export function mount(root) {
  const message = h('p', { id: 'jobs-message', hidden: true });
  const body = h('div', { id: 'jobs-body' });
  root.append(h('h1', {}, 'Jobs'), message, body);
  let busy = false;

  function say(text, error) {
    message.hidden = false;
    message.className = error ? 'error' : 'ok';
    message.textContent = text;
  }

  async function act(action, name) {
    busy = true;
    try {
      const job = await post(`/grid/jobs/${action}`, { name }, { forbidden: 'throw' });
      const verb = { pause: 'paused', resume: 'resumed', trigger: 'triggered' }[action];
      say(`Job ${job?.name ?? name} ${verb}.`, false);
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) noteSubmitDenied(error.message);
      say(`Refused: ${error.message} (${error.code})`, true);
    } finally {
      busy = false;
    }
    await refresh().catch(() => {});
  }

  function row(job, denied, now) {
    const paused = job.paused === true;
    const button = (action, label, id) => h('button', {
      type: 'button',
      dataset: { action, job: job.name },
      id,
      disabled: busy || !!denied,
      title: denied || '',
      on: { click: () => act(action, job.name) },
    }, label);
    return h('tr', { dataset: { job: job.name, paused } },
      h('td', { class: 'mono' }, job.name),
      h('td', { class: 'mono' }, h('a', { href: withQuery('#/tasks', { kind: job.task }) }, job.task)),
      h('td', { class: 'mono' }, job.cadence),
      h('td', {}, job.tz ?? 'UTC'),
      h('td', {}, job.due_ms ? `${time(job.due_ms)} (${job.due_ms >= now ? 'in ' + duration(job.due_ms - now) : duration(now - job.due_ms) + ' ago'})` : 'never'),
      h('td', {}, paused ? h('span', { class: 'tag warn' }, 'paused') : 'no'),
      h('td', { class: 'num' }, String(job.runs)),
      h('td', { class: 'num' }, String(job.skipped)),
      h('td', { class: 'num' }, job.last_task ? h('a', { href: `#/task/${job.last_task}` }, String(job.last_task)) : '-'),
      h('td', { class: 'row-actions' },
        paused ? button('resume', 'Resume') : button('pause', 'Pause'),
        button('trigger', 'Run now')));
  }

  async function refresh() {
    const answer = await get('/grid/jobs');
    const denied = submitDenied();
    const now = Date.now();
    fill(body,
      denied ? h('p', { class: 'muted' }, `Actions disabled: ${denied}`) : null,
      answer.jobs.length === 0
        ? h('p', { class: 'muted' }, 'No recurring job. Schedule one with gridkeeper schedule.')
        : h('table', { id: 'jobs-table', class: 'grid' },
          h('thead', {}, h('tr', {}, ['Name', 'Kind (its tasks)', 'Cadence', 'Zone', 'Next due', 'Paused', 'Runs', 'Skipped', 'Last run', ''].map((title) => h('th', {}, title)))),
          h('tbody', {}, answer.jobs.map((job) => row(job, denied, now)))));
  }
  return { refresh };
}
