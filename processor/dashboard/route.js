// Views as deep links: `#/<view>/<argument>?<parameters>`, e.g.
// `#/user/alice?days=30`, so a link can be pasted into a ticket.

/** The ranges offered; a link may name any other the API accepts. */
export const RANGES = [1, 7, 30, 90];

/** The route `hash` names: `{ name, args, params }`. */
export function parseRoute(hash) {
  const raw = hash.replace(/^#\/?/, '');
  const mark = raw.indexOf('?');
  const pathPart = mark < 0 ? raw : raw.slice(0, mark);
  const query = mark < 0 ? '' : raw.slice(mark + 1);
  const args = pathPart.split('/').filter((s) => s !== '').map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch {
      return segment;
    }
  });
  return { name: args.shift() || 'overview', args, params: new URLSearchParams(query) };
}

/** The link of a view. */
export function href(name, args = [], params = {}) {
  const path = [name, ...args.map((a) => encodeURIComponent(a))].join('/');
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      query.set(key, String(value));
    }
  }
  const text = query.toString();
  return `#/${path}${text ? `?${text}` : ''}`;
}

/** `days` of a route: a whole number 1..=366, else `fallback`. */
export function daysParam(params, fallback) {
  const text = params.get('days');
  if (text === null || !/^\d{1,3}$/.test(text)) {
    return fallback;
  }
  const days = Number(text);
  return days >= 1 && days <= 366 ? days : fallback;
}

/** Goes to `link` (a `#/...` string): the hashchange renders it. */
export function navigate(link) {
  if (window.location.hash === link) {
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    window.location.hash = link;
  }
}
