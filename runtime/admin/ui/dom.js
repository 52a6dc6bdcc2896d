// Building the page. Data reaches the DOM only as text nodes and attribute values: no string is
// ever parsed as HTML here, so a znode's data or a task's output can never become markup.

const SVG = 'http://www.w3.org/2000/svg';

/**
 * An element: `h('td', {class: 'x', dataset: {task: 3}}, 'text', child, [more])`. Strings and
 * numbers become text nodes; null, undefined and false are skipped. Event handlers are passed as
 * `on: {click: fn}`, never as attributes; links may only point inside the console.
 */
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

function setAttributes(element, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === 'dataset') {
      for (const [key, data] of Object.entries(value)) element.dataset[key] = String(data);
    } else if (name === 'class') {
      element.className = value;
    } else if (name === 'value') {
      element.value = value;
    } else {
      if (/^on/i.test(name) || name === 'style' || name === 'srcdoc') throw new Error(`attribute ${name} is not allowed`);
      if (name === 'href' && !/^#/.test(String(value))) throw new Error('links stay inside the console');
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces `element`'s children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** An SVG element with attributes (numbers and fixed names only). */
function s(tag, attrs) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

/**
 * A sparkline of `values` (oldest first) as inline SVG: a line and its area, scaled to the largest
 * value (or `max`), with a title for screen readers.
 */
export function sparkline(values, { width = 240, height = 40, max, label = '', kind = 'good' } = {}) {
  const top = Math.max(max ?? 0, ...values, 1e-9);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((value, index) => {
    const x = (index * step).toFixed(1);
    const y = (height - 2 - (Math.max(0, value) / top) * (height - 4)).toFixed(1);
    return `${x},${y}`;
  });
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    class: `spark spark-${kind}`,
    role: 'img',
  });
  const title = document.createElementNS(SVG, 'title');
  title.textContent = label;
  svg.append(title);
  if (points.length) {
    svg.append(s('polygon', { points: `0,${height} ${points.join(' ')} ${width},${height}`, class: 'area' }));
    svg.append(s('polyline', { points: points.join(' '), class: 'line' }));
  }
  return svg;
}

/** A horizontal bar from `from` to `to` (fractions of the width), for an attempt's timeline. */
export function spanBar(segments, { width = 320, height = 14 } = {}) {
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'span-bar', role: 'img' });
  for (const segment of segments) {
    const x = Math.max(0, Math.min(1, segment.from)) * width;
    const w = Math.max(1, (Math.max(0, Math.min(1, segment.to)) * width) - x);
    svg.append(s('rect', { x: x.toFixed(1), y: 2, width: w.toFixed(1), height: height - 4, class: segment.class }));
  }
  return svg;
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** A Unix time in ms as local `YYYY-MM-DD HH:MM:SS`, or '-'. */
export function time(ms) {
  if (ms === undefined || ms === null) return '-';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in ms for people: `850 ms`, `12.3 s`, `4 min 2 s`, `3 h 5 min`. */
export function duration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '-';
  const abs = Math.abs(ms);
  const sign = ms < 0 ? '-' : '';
  if (abs < 1000) return `${sign}${Math.round(abs)} ms`;
  if (abs < 60000) return `${sign}${(abs / 1000).toFixed(1)} s`;
  if (abs < 3600000) return `${sign}${Math.floor(abs / 60000)} min ${Math.floor((abs % 60000) / 1000)} s`;
  return `${sign}${Math.floor(abs / 3600000)} h ${Math.floor((abs % 3600000) / 60000)} min`;
}

/** `value` as text of at most `max` characters, saying how much was left out. */
export function preview(value, max = 8192) {
  let text;
  if (typeof value === 'string') text = value;
  else {
    try {
      text = JSON.stringify(value, null, 2);
    } catch {
      text = String(value);
    }
  }
  if (text === undefined) text = 'null';
  if (text.length <= max) return text;
  return `${text.slice(0, max)}\n… ${text.length - max} more characters not shown`;
}

/** A state badge: the text is the state, the class colours it. */
export function badge(state) {
  return h('span', { class: `badge state-${String(state).replace(/[^a-z_]/g, '')}` }, String(state));
}

/** A paragraph explaining an error, with its code. */
export function errorLine(error, prefix = '') {
  const code = error && error.code ? ` (${error.code})` : '';
  return h('p', { class: 'error', role: 'alert' }, `${prefix}${error && error.message ? error.message : String(error)}${code}`);
}
