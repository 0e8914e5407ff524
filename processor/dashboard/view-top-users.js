// Top users: the most active users of a range, each a link to the user's page.

import { call } from './api.js';
import { empty, h, rangeSelect, rangeWords, select, table } from './dom.js';
import { int } from './format.js';
import { daysParam, href, navigate, RANGES } from './route.js';

const LIMITS = [10, 25, 50, 100];

export async function render(main, route, ctx) {
  const days = daysParam(route.params, 30);
  const limitText = route.params.get('limit');
  const limit = LIMITS.includes(Number(limitText)) ? Number(limitText) : 10;
  const top = await call('/top-users', { days, limit });
  if (!ctx.isCurrent()) {
    return null;
  }
  const go = (d, l) => navigate(href('top-users', [], { days: d, limit: l === 10 ? '' : l }));
  const words = rangeWords(days);
  main.replaceChildren(
    h('div', { class: 'view-head' },
      h('h1', { tabindex: '-1', text: 'Top users' }),
      h('div', { class: 'controls' },
        rangeSelect('top-users-range', days, RANGES, (d) => go(d, limit)),
        select('top-users-limit', 'Users shown', limit, LIMITS.map((l) => [l, String(l)]), (l) => go(days, Number(l)))),
      h('p', { class: 'muted', text: `The most active users of ${words} (UTC days).` })),
    top.users.length === 0
      ? empty(`No user was active in ${words}.`)
      : table(null, ['#', 'User', 'Activities', 'Action types'],
        top.users.map((user, i) => h('tr', { 'data-user': user.user_id },
          h('td', { class: 'num', text: int(i + 1) }),
          h('td', null, h('a', { href: href('user', [user.user_id], { days }), text: user.user_id })),
          h('td', { class: 'num', text: int(user.activity_count) }),
          h('td', { class: 'num', text: int(user.action_types) }))),
        { class: 'top-users' }),
  );
  return null;
}
