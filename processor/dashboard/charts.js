// Charts as plain SVG: a line chart of series over days, vertical bars
// (hours, weekdays), and sorted horizontal bars with counts. Each chart
// is an image with a label for screen readers; the figures are in a
// table beside it.

import { h, s } from './dom.js';
import { int } from './format.js';

const WIDTH = 720;

/** A round step for about `parts` gridlines up to `max`. */
function niceStep(max, parts) {
  const raw = Math.max(max, 1) / parts;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((m) => m >= raw);
  return Math.max(1, step);
}

function yAxis(max, height, margin) {
  const step = niceStep(max, 4);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const plot = height - margin.top - margin.bottom;
  const y = (v) => margin.top + plot - (v / top) * plot;
  const lines = [];
  for (let v = 0; v <= top; v += step) {
    lines.push(
      s('line', { class: 'grid', x1: margin.left, x2: WIDTH - margin.right, y1: y(v), y2: y(v) }),
      s('text', { class: 'tick', x: margin.left - 8, y: y(v) + 4, 'text-anchor': 'end', text: int(v) }),
    );
  }
  return { y, lines };
}

function every(n, labels) {
  return Math.max(1, Math.ceil(n / labels));
}

/**
 * Days on x, one line per series: `labels` (one per point) and `series`
 * (`{ name, values }`, at most two, styled `series-0`, `series-1`).
 */
export function lineChart(label, labels, series) {
  const height = 260;
  const margin = { top: 16, right: 20, bottom: 36, left: 64 };
  const max = Math.max(0, ...series.flatMap((one) => one.values));
  const { y, lines } = yAxis(max, height, margin);
  const n = labels.length;
  const plot = WIDTH - margin.left - margin.right;
  const x = (i) => margin.left + (n <= 1 ? plot / 2 : (i * plot) / (n - 1));
  const step = every(n, 7);
  // Every `step`-th day from the newest back, so today always has its label.
  const ticks = labels.map((text, i) => ((n - 1 - i) % step === 0
    ? s('text', { class: 'tick', x: x(i), y: height - margin.bottom + 20, 'text-anchor': 'middle', text })
    : null));
  const drawn = series.map((one, k) => {
    const points = one.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    return s('g', { class: `series-${one.style ?? k}` },
      n > 1 ? s('polyline', { points: points.join(' '), fill: 'none' }) : null,
      one.values.map((v, i) => s('circle', { cx: x(i), cy: y(v), r: n > 40 ? 2 : 3.5 },
        s('title', { text: `${labels[i]}: ${int(v)} ${one.name}` }))));
  });
  return h('figure', { class: 'chart' },
    s('svg', { viewBox: `0 0 ${WIDTH} ${height}`, role: 'img', 'aria-label': label },
      lines, ticks, drawn),
    h('figcaption', { class: 'legend' },
      series.map((one, k) => h('span', { class: `key series-${one.style ?? k}` }, h('span', { class: 'swatch' }), one.name))));
}

/** Vertical bars, one per label (the hours of a day, the weekdays). */
export function columnChart(label, labels, values, unit) {
  const height = 220;
  const margin = { top: 16, right: 12, bottom: 32, left: 64 };
  const max = Math.max(0, ...values);
  const { y, lines } = yAxis(max, height, margin);
  const n = values.length;
  const slot = (WIDTH - margin.left - margin.right) / n;
  const step = n > 12 ? 3 : 1;
  return h('figure', { class: 'chart' },
    s('svg', { viewBox: `0 0 ${WIDTH} ${height}`, role: 'img', 'aria-label': label },
      lines,
      values.map((v, i) => s('rect', {
        class: 'column',
        x: (margin.left + i * slot + slot * 0.15).toFixed(1),
        y: y(v).toFixed(1),
        width: (slot * 0.7).toFixed(1),
        height: Math.max(0, y(0) - y(v)).toFixed(1),
      }, s('title', { text: `${labels[i]}: ${int(v)} ${unit}` }))),
      labels.map((text, i) => (i % step === 0
        ? s('text', { class: 'tick', x: margin.left + i * slot + slot / 2, y: height - 10, 'text-anchor': 'middle', text })
        : null))));
}

/**
 * Sorted horizontal bars with their counts: `items` are
 * `{ label, value, note }`, drawn largest first.
 */
export function barList(label, items) {
  const sorted = [...items].sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
  const max = Math.max(1, ...sorted.map((item) => item.value));
  return h('ol', { class: 'bars', 'aria-label': label },
    sorted.map((item) => {
      const fill = h('span', { class: 'fill' });
      // Through the CSSOM, which the page's CSP allows (a style attribute it refuses).
      fill.style.width = `${((item.value / max) * 100).toFixed(2)}%`;
      return h('li', { 'data-label': item.label },
        h('span', { class: 'bar-label', text: item.label }),
        h('span', { class: 'bar-track' }, fill),
        h('span', { class: 'bar-count', text: int(item.value) }),
        item.note ? h('span', { class: 'bar-note', text: item.note }) : null);
    }));
}
