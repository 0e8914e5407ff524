// Statistics for a range: daily activities and active users as lines,
// activity by hour of day as columns, the action breakdown and feature
// usage as sorted bars with their counts.

import { call } from './api.js';
import { barList, columnChart, lineChart } from './charts.js';
import { empty, h, rangeSelect, rangeWords, section, table } from './dom.js';
import { int, share, utcDay } from './format.js';
import { daysParam, href, navigate, RANGES } from './route.js';

const HOURS = Array.from({ length: 24 }, (_, hour) => String(hour).padStart(2, '0'));

function summary(stats) {
  return h('dl', { class: 'cards' },
    [
      ['total_activities', 'Activities', int(stats.total_activities)],
      ['active_users', 'Active users', int(stats.active_users)],
      ['today_activities', 'Activities today', int(stats.today_activities)],
      ['actions', 'Actions used', int(Object.keys(stats.activity_breakdown).length)],
    ].map(([key, label, value]) => h('div', { class: 'card' },
      h('dt', { text: label }),
      h('dd', { class: 'figure-value', 'data-figure': key, text: value }))));
}

function dailyTable(daily) {
  return h('details', null,
    h('summary', { text: 'Daily figures as a table' }),
    table(null, ['Day (UTC)', 'Activities', 'Active users'],
      daily.map((d) => h('tr', { 'data-date': d.date },
        h('td', { text: d.date }),
        h('td', { class: 'num', text: int(d.count) }),
        h('td', { class: 'num', text: int(d.active_users) }))),
      { class: 'daily' }));
}

export async function render(main, route, ctx) {
  const days = daysParam(route.params, 7);
  const [stats, usage] = await Promise.all([
    call('/statistics', { days }),
    call('/actions', { days }),
  ]);
  if (!ctx.isCurrent()) {
    return null;
  }
  const words = rangeWords(days);
  const head = h('div', { class: 'view-head' },
    h('h1', { tabindex: '-1', text: 'Statistics' }),
    h('div', { class: 'controls' },
      rangeSelect('statistics-range', days, RANGES, (d) => navigate(href('statistics', [], { days: d })))),
    h('p', { class: 'muted', text: `UTC days, ${words} (since ${utcDay(stats.since.slice(0, 10))}).` }));
  if (stats.total_activities === 0) {
    main.replaceChildren(head, summary(stats), empty(`No activity in ${words}.`));
    return null;
  }
  const labels = stats.daily.map((d) => utcDay(d.date));
  const total = stats.total_activities;
  main.replaceChildren(
    head,
    summary(stats),
    section('Daily activities and active users',
      // Two charts, each on its own scale: users are far fewer than activities.
      h('div', { class: 'columns' },
        lineChart(`Activities per day, ${words}`, labels, [
          { name: 'activities', values: stats.daily.map((d) => d.count) },
        ]),
        lineChart(`Active users per day, ${words}`, labels, [
          { name: 'active users', values: stats.daily.map((d) => d.active_users), style: 1 },
        ])),
      dailyTable(stats.daily)),
    section('Activity by hour of day (UTC)',
      columnChart(`Activities by hour of day, ${words}`, HOURS, stats.hourly, 'activities')),
    h('div', { class: 'columns' },
      section('Action breakdown',
        barList('Activities per action', Object.entries(stats.activity_breakdown).map(([action, count]) => ({
          label: action, value: count, note: share(count / total),
        })))),
      section('Feature usage',
        usage.actions.length === 0
          ? empty(`No action was used in ${words}.`)
          : barList('Distinct users per action', usage.actions.map((a) => ({
            label: a.action,
            value: a.user_count,
            note: `${int(a.user_count)} ${a.user_count === 1 ? 'user' : 'users'}, ${int(a.usage_count)} ${a.usage_count === 1 ? 'use' : 'uses'}`,
          }))))),
  );
  return null;
}
