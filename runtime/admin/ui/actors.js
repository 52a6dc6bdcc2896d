// The actors page: GET /grid/actors, optionally of one kind, in (kind, key) order: where each actor
// is hosted, whether its state is durable, the calls committed, the messages its activation handled
// (known only for actors hosted on the node this console talks to) and the bytes of its snapshot.
// The kind filter lives in the hash, so a filtered view can be linked to.

import { get, withQuery } from './api.js';
import { fill, h } from './dom.js';

function row(actor) {
  return h('tr', { dataset: { kind: actor.kind, key: actor.key, node: actor.node ?? '' } },
    h('td', { class: 'mono' }, h('a', { href: withQuery('#/actors', { kind: actor.kind }) }, actor.kind)),
    h('td', { class: 'mono' }, actor.key),
    h('td', { class: 'num' }, actor.node == null ? h('span', { class: 'muted', title: 'not active: passivated, or waiting for its next call' }, '-') : String(actor.node)),
    h('td', {}, actor.durable ? 'yes' : 'no', actor.singleton ? h('span', { class: 'tag' }, 'singleton') : null),
    h('td', { class: 'num' }, String(actor.seq)),
    h('td', { class: 'num' }, actor.messages == null ? '-' : String(actor.messages)),
    h('td', { class: 'num' }, String(actor.state_bytes)));
}

export function mount(root, { params }, ctx) {
  const current = params.get('kind') || '';
  const kind = h('input', { name: 'kind', id: 'actors-kind', type: 'text', value: current, placeholder: 'any', maxlength: 64 });
  const apply = (event) => {
    event.preventDefault();
    ctx.navigate(withQuery('#/actors', { kind: kind.value.trim() }));
  };
  const form = h('form', { class: 'filters', id: 'actor-filters', on: { submit: apply } },
    h('label', {}, h('span', {}, 'Kind'), kind),
    h('button', { type: 'submit', id: 'actors-apply' }, 'Apply'),
    h('a', { href: '#/actors', class: 'button-link' }, 'Clear'));
  const body = h('div', { id: 'actors-body' });
  root.append(h('h1', {}, 'Actors'), form, body);

  async function refresh() {
    const answer = await get(withQuery('/grid/actors', { kind: current }));
    fill(body,
      answer.actors.length === 0
        ? h('p', { class: 'muted', id: 'actors-empty' }, 'No actor yet. Call one with gridkeeper actor call --kind counter --key K --message \'{"add": 1}\'.')
        : h('table', { id: 'actors-table', class: 'grid' },
          h('thead', {}, h('tr', {}, ['Kind', 'Key', 'Node', 'Durable', 'Committed calls', 'Messages', 'State bytes'].map((title) => h('th', {}, title)))),
          h('tbody', {}, answer.actors.map(row))),
      answer.truncated ? h('p', { class: 'muted', id: 'actors-truncated' }, `The first ${answer.actors.length} shown; narrow by kind.`) : null);
  }
  return { refresh };
}
