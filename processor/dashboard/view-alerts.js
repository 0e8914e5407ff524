// Alerts: the API's list with its filters (status, rule, user, range),
// page by page, each open alert with an Acknowledge button.

import { call } from './api.js';
import { empty, h, rangeWords, select, table } from './dom.js';
import { dateTime, int } from './format.js';
import { daysParam, href, navigate, RANGES } from './route.js';

const BUILT_IN_RULES = ['rate', 'failed_then_success', 'new_ip'];
const COLUMNS = ['Raised', 'Rule', 'Group', 'User or address', 'Events', 'First – last event', 'Status', 'Action'];
const STATUSES = [['', 'Any'], ['open', 'Open'], ['acknowledged', 'Acknowledged']];

function filtersFrom(params) {
  const given = params.get('status') ?? 'open';
  const status = given === 'any' ? '' : given;
  return {
    status: STATUSES.some(([value]) => value === status) ? status : 'open',
    rule: (params.get('rule') ?? '').trim(),
    user_id: (params.get('user_id') ?? '').trim(),
    days: daysParam(params, 30),
  };
}

/** The link of `filters`; `status` is kept even when empty ("any"). */
function link(filters) {
  return href('alerts', [], { ...filters, status: filters.status || 'any' });
}

function describe(filters) {
  const words = [filters.status || '', filters.rule ? `${filters.rule}` : ''].filter(Boolean).join(' ');
  const who = filters.user_id ? ` about ${filters.user_id}` : '';
  return `No ${words ? `${words} ` : ''}alerts${who} in ${rangeWords(filters.days)}.`;
}

function filterForm(filters) {
  const rule = h('input', { id: 'alerts-rule', name: 'rule', list: 'alerts-rules', value: filters.rule, autocomplete: 'off', spellcheck: 'false' });
  const user = h('input', { id: 'alerts-user', name: 'user_id', value: filters.user_id, autocomplete: 'off', spellcheck: 'false' });
  let status = filters.status;
  let days = filters.days;
  const form = h('form', { class: 'filters', 'aria-label': 'Alert filters' },
    select('alerts-status', 'Status', status, STATUSES, (value) => { status = value; }),
    h('div', { class: 'field' }, h('label', { for: 'alerts-rule', text: 'Rule' }), rule,
      h('datalist', { id: 'alerts-rules' }, BUILT_IN_RULES.map((name) => h('option', { value: name })))),
    h('div', { class: 'field' }, h('label', { for: 'alerts-user', text: 'User id' }), user),
    select('alerts-range', 'Raised in', days, RANGES.map((d) => [d, d === 1 ? 'Today' : `Last ${d} days`]), (value) => { days = Number(value); }),
    h('div', { class: 'field' }, h('button', { type: 'submit', text: 'Apply filters' })));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    navigate(link({ status, rule: rule.value.trim(), user_id: user.value.trim(), days }));
  });
  return form;
}

export async function render(main, route, ctx) {
  const filters = filtersFrom(route.params);
  const query = { ...filters, status: filters.status || undefined };
  const first = await call('/alerts', query);
  if (!ctx.isCurrent()) {
    return null;
  }
  const acknowledge = async (alert, cell, button) => {
    button.disabled = true;
    button.textContent = 'Acknowledging…';
    try {
      const updated = await call(`/alerts/${encodeURIComponent(alert.id)}/acknowledge`, {}, 'POST');
      const row = cell.closest('tr');
      row.querySelector('[data-status]').textContent = updated.status;
      cell.replaceChildren(h('span', { class: 'muted', text: `Acknowledged ${dateTime(updated.acknowledged_at)}` }));
      row.classList.remove('open');
    } catch (error) {
      button.disabled = false;
      button.textContent = 'Acknowledge';
      ctx.fail(error);
    }
  };
  const row = (alert) => {
    const action = h('td', null);
    if (alert.status === 'open') {
      const button = h('button', { type: 'button', class: 'ack', 'aria-label': `Acknowledge the ${alert.rule} alert of ${alert.group_value}`, text: 'Acknowledge' });
      button.addEventListener('click', () => acknowledge(alert, action, button));
      action.append(button);
    } else {
      action.append(h('span', { class: 'muted', text: `Acknowledged ${dateTime(alert.acknowledged_at)}` }));
    }
    action.setAttribute('data-label', COLUMNS[7]);
    return h('tr', { 'data-id': alert.id, class: alert.status === 'open' ? 'open' : null },
      h('td', { 'data-label': COLUMNS[0], text: dateTime(alert.created_at) }),
      h('td', { 'data-label': COLUMNS[1], text: alert.rule }),
      h('td', { 'data-label': COLUMNS[2] }, alert.group_kind === 'user'
        ? h('a', { href: href('user', [alert.group_value], { days: 30 }), text: alert.group_value })
        : `${alert.group_kind} ${alert.group_value}`),
      h('td', { 'data-label': COLUMNS[3], text: alert.user_id && alert.group_kind !== 'user' ? alert.user_id : (alert.ip_address ?? '') }),
      h('td', { 'data-label': COLUMNS[4], class: 'num', text: int(alert.count) }),
      h('td', { 'data-label': COLUMNS[5], text: `${dateTime(alert.first_event_at)} – ${dateTime(alert.last_event_at)}` }),
      h('td', { 'data-label': COLUMNS[6], 'data-status': '', text: alert.status }),
      action);
  };

  const head = h('div', { class: 'view-head' },
    h('h1', { tabindex: '-1', text: 'Alerts' }),
    filterForm(filters));
  if (first.alerts.length === 0) {
    main.replaceChildren(head, empty(describe(filters)));
    return null;
  }
  const rows = h('tbody', null, first.alerts.map(row));
  let cursor = first.next_cursor;
  const more = h('button', { type: 'button', class: 'load-more', text: 'Load more', hidden: !cursor });
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      const page = await call('/alerts', { ...query, cursor });
      if (!ctx.isCurrent()) {
        return;
      }
      rows.append(...page.alerts.map(row));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      ctx.fail(error);
    } finally {
      more.disabled = false;
    }
  });
  main.replaceChildren(
    head,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'alerts stack' },
        h('thead', null, h('tr', null,
          COLUMNS.map((t) => h('th', { scope: 'col', text: t })))),
        rows)),
    h('div', { class: 'more' }, more),
  );
  return null;
}
