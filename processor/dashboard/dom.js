// Building the page from data: elements made with text nodes only (no
// HTML strings), so nothing a user id or an action holds is ever markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'text') {
      element.textContent = String(value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: `h('a', { href, class }, 'text', child)`. */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A titled panel. */
export function section(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', { text: title }), ...children);
}

/** The message shown instead of a chart or table that has no data: it says why. */
export function empty(text) {
  return h('p', { class: 'empty', text });
}

/** A table in a scrolling box (a narrow screen scrolls the table, not the page). */
export function table(caption, headers, rows, attrs = {}) {
  // Each cell names its column, for the narrow layout's cards (`table.stack`).
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (headers[i] && !cell.hasAttribute('data-label')) {
        cell.setAttribute('data-label', headers[i]);
      }
    });
  }
  // A column of figures is right-aligned, its heading too.
  const numeric = rows.length > 0 ? [...rows[0].children].map((cell) => cell.classList.contains('num')) : [];
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      caption ? h('caption', { text: caption }) : null,
      h('thead', null, h('tr', null, headers.map((header, i) => h('th', { scope: 'col', class: numeric[i] ? 'num' : null, text: header })))),
      h('tbody', null, rows)));
}

/** A labelled `<select>` of `options` (`[value, label]` pairs). */
export function select(id, label, value, options, onchange) {
  const values = options.map(([v]) => String(v));
  const all = values.includes(String(value)) ? options : [...options, [value, String(value)]];
  return h('div', { class: 'field' },
    h('label', { for: id, text: label }),
    h('select', { id, name: id, onchange: (event) => onchange(event.target.value) },
      all.map(([v, text]) => h('option', { value: v, selected: String(v) === String(value), text }))));
}

/** A range picker of days. */
export function rangeSelect(id, days, ranges, onchange) {
  return select(id, 'Range', days,
    ranges.map((d) => [d, d === 1 ? 'Today' : `Last ${d} days`]),
    (value) => onchange(Number(value)));
}

/** "today" or "the last N days", for sentences. */
export function rangeWords(days) {
  return days === 1 ? 'today' : `the last ${days} days`;
}
