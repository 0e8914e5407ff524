// One user: totals, breakdown, addresses, profile and risk score with its
// factors, the action path as a timeline, and recent activity page by
// page on the API's keyset cursor ("Load more").

import { ApiError, call, userPath } from './api.js';
import { barList, columnChart } from './charts.js';
import { empty, h, rangeSelect, rangeWords, section, table } from './dom.js';
import { dateTime, decimal, int, MISSING, share } from './format.js';
import { daysParam, href, navigate, RANGES } from './route.js';

/** Rows of recent activity asked for at a time. */
export const RECENT_PAGE = 25;
/** Steps of the action path asked for. */
const PATH_STEPS = 200;
const HOURS = Array.from({ length: 24 }, (_, hour) => String(hour).padStart(2, '0'));
const RECENT_COLUMNS = ['Time', 'Action', 'Resource', 'Status', 'Address', 'Session'];
const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** The profile in the browser's zone; in UTC if the API does not know that zone. */
async function profile(userId, days) {
  const tz = browserZone();
  try {
    return await call(userPath(userId, '/profile'), { days, tz });
  } catch (error) {
    if (error instanceof ApiError && error.status === 400 && tz !== 'UTC') {
      return call(userPath(userId, '/profile'), { days, tz: 'UTC' });
    }
    throw error;
  }
}

function resource(record) {
  if (!record.resource_type && !record.resource_id) {
    return MISSING;
  }
  return [record.resource_type, record.resource_id].filter(Boolean).join(' ');
}

function recentRow(record) {
  const status = record.details && record.details.status !== undefined ? String(record.details.status) : MISSING;
  const cells = [dateTime(record.created_at), record.action, resource(record), status,
    record.ip_address ?? MISSING, record.session_id ?? MISSING];
  return h('tr', { 'data-id': record.id },
    cells.map((text, i) => h('td', { 'data-label': RECENT_COLUMNS[i], class: i === 5 ? 'clip' : null, title: i === 5 ? text : null, text })));
}

function totals(stats, prof) {
  const risk = prof.risk_score.score;
  const meter = h('meter', { min: 0, max: 100, low: 34, high: 67, optimum: 0, value: risk, 'aria-label': 'Risk score' });
  return h('dl', { class: 'cards' },
    h('div', { class: 'card' }, h('dt', { text: 'Activities' }),
      h('dd', { class: 'figure-value', 'data-figure': 'total_activities', text: int(stats.total_activities) })),
    h('div', { class: 'card' }, h('dt', { text: 'Risk score' }),
      h('dd', { class: 'figure-value', 'data-figure': 'risk_score', text: `${int(risk)} / 100` }), h('dd', null, meter)),
    h('div', { class: 'card' }, h('dt', { text: 'Activity level' }),
      h('dd', { class: 'figure-value', 'data-figure': 'activity_level', text: prof.activity_level })),
    h('div', { class: 'card' }, h('dt', { text: 'Addresses' }),
      h('dd', { class: 'figure-value', 'data-figure': 'distinct_ips', text: int(prof.ip_summary.distinct_ips) }),
      h('dd', { class: 'figure-hint', text: `${int(prof.ip_summary.new_ip_count)} new in the last 7 days` })),
    h('div', { class: 'card' }, h('dt', { text: 'First seen' }), h('dd', { 'data-figure': 'first_seen', text: dateTime(stats.first_seen) })),
    h('div', { class: 'card' }, h('dt', { text: 'Last seen' }), h('dd', { 'data-figure': 'last_seen', text: dateTime(stats.last_seen) })));
}

function riskFactors(prof) {
  return table(null, ['Factor', 'Value', 'Baseline', 'Saturates at', 'Weight', 'Points'],
    prof.risk_score.factors.map((f) => h('tr', { 'data-factor': f.name },
      h('td', { text: f.name }),
      h('td', { class: 'num', text: f.name === 'off_hours_share' ? share(f.value) : decimal(f.value) }),
      h('td', { class: 'num', text: decimal(f.baseline) }),
      h('td', { class: 'num', text: decimal(f.saturates_at) }),
      h('td', { class: 'num', text: decimal(f.weight) }),
      h('td', { class: 'num', text: decimal(f.points) }))),
    { class: 'risk-factors stack' });
}

function addresses(stats, prof) {
  const fresh = new Set(prof.ip_summary.new_ips.map((ip) => ip.ip_address));
  return stats.ip_addresses.length === 0
    ? empty('No address was recorded for these activities.')
    : table(null, ['Address', 'Activities', ''],
      stats.ip_addresses.map((ip) => h('tr', { 'data-ip': ip.ip_address },
        h('td', { text: ip.ip_address }),
        h('td', { class: 'num', text: int(ip.count) }),
        h('td', null, fresh.has(ip.ip_address) ? h('span', { class: 'badge', text: 'new' }) : ''))),
      { class: 'ips' });
}

function timeline(path, words) {
  if (path.steps.length === 0) {
    return empty(`No actions in ${words}.`);
  }
  return h('div', null,
    path.truncated ? h('p', { class: 'muted', text: `The last ${int(path.steps.length)} actions; older ones are left out.` }) : null,
    h('ol', { class: 'timeline' },
      path.steps.map((step) => h('li', null,
        h('time', { datetime: step.created_at, text: dateTime(step.created_at) }),
        h('span', { class: 'step-action', text: step.action }),
        step.resource_type || step.resource_id ? h('span', { class: 'muted', text: ` on ${resource(step)}` }) : null))));
}

export async function render(main, route, ctx) {
  const userId = route.args[0];
  if (!userId) {
    main.replaceChildren(h('h1', { tabindex: '-1', text: 'User' }), empty('No user id in the link: open a user from Top users or type an id above.'));
    return null;
  }
  const days = daysParam(route.params, 30);
  const [stats, prof, path, alerts] = await Promise.all([
    call(userPath(userId), { days, limit: RECENT_PAGE }),
    profile(userId, days),
    call(userPath(userId, '/path'), { days, limit: PATH_STEPS }),
    call('/alerts', { user_id: userId, status: 'open' }),
  ]);
  if (!ctx.isCurrent()) {
    return null;
  }
  const words = rangeWords(days);
  const head = h('div', { class: 'view-head' },
    h('h1', { tabindex: '-1' }, 'User ', h('span', { class: 'user-id', text: userId })),
    h('div', { class: 'controls' },
      rangeSelect('user-range', days, RANGES, (d) => navigate(href('user', [userId], { days: d })))),
    alerts.alerts.length > 0
      ? h('p', { class: 'message' }, h('a', { href: href('alerts', [], { user_id: userId, status: 'open' }),
        text: `${int(alerts.alerts.length)}${alerts.next_cursor ? '+' : ''} open alert${alerts.alerts.length === 1 ? '' : 's'}` }))
      : null);
  if (stats.total_activities === 0) {
    main.replaceChildren(head, empty(`No activity by ${userId} in ${words}.`));
    return null;
  }

  const rows = h('tbody', null, stats.recent.map(recentRow));
  const more = h('button', { type: 'button', class: 'load-more', text: 'Load more' });
  const end = h('p', { class: 'muted end', text: `No older activity in ${words}.` });
  let cursor = stats.next_cursor;
  const showCursor = () => {
    more.hidden = !cursor;
    end.hidden = Boolean(cursor);
  };
  more.addEventListener('click', async () => {
    more.disabled = true;
    more.textContent = 'Loading…';
    try {
      const page = await call(userPath(userId), { days, limit: RECENT_PAGE, cursor });
      if (!ctx.isCurrent()) {
        return;
      }
      rows.append(...page.recent.map(recentRow));
      cursor = page.next_cursor;
      showCursor();
    } catch (error) {
      ctx.fail(error);
    } finally {
      more.disabled = false;
      more.textContent = 'Load more';
    }
  });
  showCursor();
  const recent = h('div', null,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'recent stack' },
        h('thead', null, h('tr', null, RECENT_COLUMNS.map((t) => h('th', { scope: 'col', text: t })))),
        rows)),
    h('div', { class: 'more' }, more, end));

  const pattern = prof.usage_pattern;
  main.replaceChildren(
    head,
    totals(stats, prof),
    h('div', { class: 'columns' },
      section('Action breakdown',
        barList('Activities per action', Object.entries(stats.activity_breakdown).map(([action, count]) => ({
          label: action, value: count, note: share(count / stats.total_activities),
        })))),
      section('Addresses', addresses(stats, prof))),
    section('Risk score factors',
      h('p', { class: 'muted', text: 'Each factor gives up to its weight in points between its baseline and where it saturates; the points add up to the score (docs/profile.md).' }),
      riskFactors(prof)),
    section('Profile',
      h('p', { class: 'muted', text: `Hours and weekdays in ${pattern.time_zone}; peak hour ${pattern.peak_hour === null ? MISSING : `${HOURS[pattern.peak_hour]}:00`}; ${share(pattern.off_hours_share)} off hours (before 08:00 or from 20:00).` }),
      h('h3', { text: 'Primary functions' }),
      table(null, ['Action', 'Activities', 'Share'],
        prof.primary_functions.map((f) => h('tr', null,
          h('td', { text: f.action }), h('td', { class: 'num', text: int(f.count) }), h('td', { class: 'num', text: share(f.share) })))),
      h('div', { class: 'columns' },
        h('div', null, h('h3', { text: 'By hour of day' }), columnChart(`Activities by hour in ${pattern.time_zone}`, HOURS, pattern.hourly, 'activities')),
        h('div', null, h('h3', { text: 'By weekday' }), columnChart(`Activities by weekday in ${pattern.time_zone}`, WEEKDAYS, pattern.weekdays, 'activities')))),
    section('Action path', timeline(path, words)),
    section('Recent activity', recent),
  );
  // The path reads oldest first; its newest steps are the ones in view.
  const steps = main.querySelector('ol.timeline');
  if (steps) {
    steps.scrollTop = steps.scrollHeight;
  }
  return null;
}
