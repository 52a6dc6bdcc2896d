// The registry browser: a tree of znodes (GET /registry/children, expanded on demand), and the
// selected node's data (GET /registry/node), stat (GET /registry/stat) and ACL (GET /registry/acl).
// A node whose ACL refuses this token shows the refusal in place; it does not sign the user out.

import { get, withQuery } from './api.js';
import { errorLine, fill, h, preview, time } from './dom.js';

/** Children listed under one node; the rest are counted. */
const CHILDREN_SHOWN = 500;
/** Nodes whose children are refreshed live. */
const EXPANDED_MAX = 32;
/** Characters of a node's data shown. */
const DATA_CHARS = 16384;

const PERMS = [[1, 'r'], [2, 'w'], [4, 'c'], [8, 'd'], [16, 'a']];

function perms(bits) {
  return PERMS.map(([bit, letter]) => (bits & bit ? letter : '-')).join('');
}

function join(parent, child) {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

function ancestors(path) {
  const parts = path.split('/').filter(Boolean);
  const out = ['/'];
  for (let i = 1; i <= parts.length; i += 1) out.push('/' + parts.slice(0, i).join('/'));
  return out;
}

const read = (route, path) => get(withQuery(route, { path }), { forbidden: 'throw' });

export function mount(root, { params }) {
  const raw = params.get('path') || '/';
  const selected = raw.startsWith('/') ? raw : '/' + raw;
  const expanded = new Set(ancestors(selected));
  const children = new Map();
  const tree = h('ul', { class: 'tree', id: 'registry-tree' });
  const detail = h('div', { class: 'znode', id: 'registry-detail' });
  root.append(h('h1', {}, 'Registry'),
    h('div', { class: 'split' }, h('nav', { class: 'tree-box' }, tree), detail));

  function node(path, name) {
    const open = expanded.has(path);
    const known = children.get(path);
    const toggle = h('button', {
      type: 'button',
      class: 'toggle',
      title: open ? 'collapse' : 'expand',
      on: {
        click: () => {
          if (open) expanded.delete(path);
          else if (expanded.size < EXPANDED_MAX) expanded.add(path);
          refreshTree().catch(() => {});
        },
      },
    }, open ? '▾' : '▸');
    const link = h('a', { href: withQuery('#/registry', { path }), class: path === selected ? 'current' : '', dataset: { path } }, name);
    let sub = null;
    if (open && known) {
      if (known.error) sub = h('ul', {}, h('li', { class: 'error' }, known.error));
      else {
        const shown = known.list.slice(0, CHILDREN_SHOWN);
        sub = h('ul', {}, shown.map((child) => node(join(path, child), child)),
          known.list.length > shown.length ? h('li', { class: 'muted' }, `… ${known.list.length - shown.length} more`) : null);
      }
    }
    return h('li', {}, toggle, link, sub);
  }

  async function refreshTree() {
    await Promise.all([...expanded].map(async (path) => {
      try {
        const answer = await read('/registry/children', path);
        children.set(path, { list: answer.children });
      } catch (error) {
        if (error.status === 401) throw error;
        children.set(path, { error: `${error.message} (${error.code})` });
      }
    }));
    fill(tree, node('/', '/'));
  }

  function statTable(stat) {
    const rows = [
      ['czxid', stat.czxid], ['mzxid', stat.mzxid], ['pzxid', stat.pzxid],
      ['ctime', time(stat.ctime)], ['mtime', time(stat.mtime)],
      ['version', stat.version], ['cversion', stat.cversion],
      ['ephemeral owner', stat.ephemeral_owner ? String(stat.ephemeral_owner) : 'none (persistent)'],
      ['data length', stat.data_length], ['children', stat.num_children],
    ];
    return h('table', { class: 'grid compact', id: 'registry-stat' }, h('tbody', {}, rows.map(([name, value]) => h('tr', {}, h('th', {}, name), h('td', { class: 'mono' }, String(value))))));
  }

  async function refreshDetail() {
    const [data, stat, acl] = await Promise.allSettled([
      read('/registry/node', selected),
      read('/registry/stat', selected),
      read('/registry/acl', selected),
    ]);
    for (const answer of [data, stat, acl]) if (answer.status === 'rejected' && answer.reason.status === 401) throw answer.reason;
    const parts = [h('h2', { class: 'mono', id: 'registry-path' }, selected)];
    if (stat.status === 'fulfilled' && stat.value.stat === null) {
      parts.push(h('p', { class: 'error' }, 'No such node.'));
      fill(detail, parts);
      return;
    }
    parts.push(h('h3', {}, 'Data'));
    if (data.status === 'fulfilled') {
      const body = data.value;
      const printable = !/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(body.data);
      parts.push(h('pre', { class: 'preview', id: 'registry-data' }, body.data.length === 0 ? '(empty)' : printable ? preview(body.data, DATA_CHARS) : preview(`hex: ${body.data_hex}`, DATA_CHARS)));
    } else {
      parts.push(errorLine(data.reason, 'Data not readable: '));
    }
    parts.push(h('h3', {}, 'Stat'));
    if (stat.status === 'fulfilled') parts.push(statTable(stat.value.stat));
    else parts.push(errorLine(stat.reason));
    parts.push(h('h3', {}, 'ACL'));
    if (acl.status === 'fulfilled') {
      parts.push(h('table', { class: 'grid compact', id: 'registry-acl' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Scheme'), h('th', {}, 'Id'), h('th', {}, 'Perms'))),
        h('tbody', {}, acl.value.acl.map((entry) => h('tr', {}, h('td', {}, entry.scheme), h('td', { class: 'mono' }, entry.id), h('td', { class: 'mono', title: 'read write create delete admin' }, perms(entry.perms)))))),
      h('p', { class: 'muted' }, `ACL version ${acl.value.aversion}`));
    } else {
      parts.push(errorLine(acl.reason, 'ACL not readable: '));
    }
    fill(detail, parts);
  }

  async function refresh() {
    await Promise.all([refreshTree(), refreshDetail()]);
  }
  return { refresh };
}
