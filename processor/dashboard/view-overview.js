// Overview: the queue and today's figures, refreshed every 5 s in place
// (the same elements get new text: nothing flickers or loses focus).

import { call } from './api.js';
import { empty, h, section, table } from './dom.js';
import { dateTime, decimal, duration, int, MISSING, share, time } from './format.js';
import { href } from './route.js';

const REFRESH_MS = 5000;
/** Open alerts counted at most (one page of the API). */
const OPEN_ALERT_PAGE = 500;
const LISTED_ALERTS = 5;

const FIGURES = [
  ['queue_length', 'Queue length', 'events waiting in the stream'],
  ['pending', 'Pending', 'entries delivered, not yet acknowledged'],
  ['processed_per_second', 'Processing rate', 'events per second, last minute'],
  ['dead_letter_length', 'Dead letters', 'entries in the dead-letter stream'],
  ['db_write_success_rate', 'Write success', 'database writes that succeeded'],
  ['oldest_pending_age_seconds', 'Oldest pending', 'age of the oldest pending entry'],
  ['today_activities', 'Activities today', 'stored today (UTC)'],
  ['active_users_today', 'Active users today', 'distinct users today (UTC)'],
  ['open_alerts', 'Open alerts', 'not yet acknowledged, last 30 days'],
];

function shown(key, status, alerts) {
  switch (key) {
    case 'processed_per_second':
      return `${decimal(status.processed_per_second)}/s`;
    case 'db_write_success_rate':
      return status.db_write_success_rate === null ? 'no writes yet' : share(status.db_write_success_rate);
    case 'oldest_pending_age_seconds':
      return status.oldest_pending_age_seconds === null ? 'none pending' : duration(status.oldest_pending_age_seconds);
    case 'open_alerts':
      return alerts.next_cursor ? `${int(alerts.alerts.length)}+` : int(alerts.alerts.length);
    default:
      return status[key] === null ? MISSING : int(status[key]);
  }
}

async function load() {
  const [status, alerts] = await Promise.all([
    call('/queue-status'),
    call('/alerts', { status: 'open', limit: OPEN_ALERT_PAGE }),
  ]);
  return { status, alerts };
}

function alertRows(alerts) {
  return alerts.slice(0, LISTED_ALERTS).map((alert) => h('tr', { 'data-id': alert.id },
    h('td', { text: dateTime(alert.created_at) }),
    h('td', null, h('a', { href: href('alerts', [], { rule: alert.rule, status: 'open' }), text: alert.rule })),
    h('td', null, alert.user_id
      ? h('a', { href: href('user', [alert.user_id], { days: 30 }), text: alert.user_id })
      : `${alert.group_kind} ${alert.group_value}`),
    h('td', { class: 'num', text: int(alert.count) })));
}

export async function render(main, _route, ctx) {
  let data = await load();
  if (!ctx.isCurrent()) {
    return null;
  }
  const values = new Map();
  const cards = FIGURES.map(([key, label, hint]) => {
    const value = h('dd', { class: 'figure-value', 'data-figure': key, text: shown(key, data.status, data.alerts) });
    values.set(key, value);
    const card = h('div', { class: 'card' }, h('dt', { text: label }), value, h('dd', { class: 'figure-hint', text: hint }));
    return key === 'open_alerts'
      ? h('a', { class: 'card-link', href: href('alerts', [], { status: 'open' }) }, card)
      : card;
  });
  const updated = h('span', { 'data-updated': '', text: time(new Date()) });
  const problem = h('p', { class: 'message', role: 'status', hidden: true });
  const redis = h('p', { class: 'message', hidden: true });
  const alertBox = h('div', { class: 'alert-list' });
  const streamKey = h('code', { text: data.status.stream_key });

  const paint = () => {
    for (const [key, element] of values) {
      const text = shown(key, data.status, data.alerts);
      if (element.textContent !== text) {
        element.textContent = text;
      }
      // A state in words ("no writes yet") is set smaller than a figure.
      element.classList.toggle('is-words', /^[a-z]/i.test(text));
    }
    redis.hidden = !data.status.redis_error;
    redis.textContent = data.status.redis_error ? `Redis figures unavailable: ${data.status.redis_error}` : '';
    streamKey.textContent = data.status.stream_key;
    // Rebuilt only when it changed, so a focused link in it stays focused.
    const listed = data.alerts.alerts.slice(0, LISTED_ALERTS).map((a) => `${a.id}:${a.count}`).join(' ');
    if (listed !== alertBox.dataset.listed || alertBox.childElementCount === 0) {
      alertBox.dataset.listed = listed;
      alertBox.replaceChildren(data.alerts.alerts.length === 0
      ? empty('No open alerts in the last 30 days.')
        : table('Newest open alerts', ['Raised', 'Rule', 'User or group', 'Events'], alertRows(data.alerts.alerts)));
    }
    updated.textContent = time(new Date());
  };
  paint();

  main.replaceChildren(
    h('div', { class: 'view-head' },
      h('h1', { tabindex: '-1', text: 'Overview' }),
      h('p', { class: 'muted' }, 'Stream ', streamKey, ' · updated ', updated, ' · refreshes every 5 s')),
    problem,
    redis,
    h('dl', { class: 'cards' }, cards),
    section('Open alerts', alertBox),
  );

  let timer = null;
  let stopped = false;
  const tick = async () => {
    // A tab in the background asks nothing; it catches up when shown.
    if (document.hidden) {
      timer = setTimeout(tick, REFRESH_MS);
      return;
    }
    try {
      data = await load();
      if (stopped) {
        return;
      }
      problem.hidden = true;
      paint();
    } catch (error) {
      if (stopped) {
        return;
      }
      if (ctx.isAuthError(error)) {
        ctx.authFailed(error);
        return;
      }
      problem.hidden = false;
      problem.textContent = `Refresh failed (${error.message}); the figures shown are from ${updated.textContent}. Retrying.`;
    }
    if (!stopped) {
      timer = setTimeout(tick, REFRESH_MS);
    }
  };
  timer = setTimeout(tick, REFRESH_MS);
  return {
    dispose() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
