// Numbers and times as people read them: thousands separators, shares as
// percentages, instants in the browser's time zone (with its name).

const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const percent = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });
const instant = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
});
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const day = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });

/** Shown for a figure the API could not give (null). */
export const MISSING = '—';

export function int(n) {
  return n === null || n === undefined ? MISSING : whole.format(n);
}

export function decimal(n) {
  return n === null || n === undefined ? MISSING : oneDecimal.format(n);
}

export function share(fraction) {
  return fraction === null || fraction === undefined ? MISSING : percent.format(fraction);
}

export function dateTime(iso) {
  return iso ? instant.format(new Date(iso)) : MISSING;
}

export function time(date) {
  return clock.format(date);
}

/** A UTC day (`2026-12-02`) as "Dec 2". */
export function utcDay(isoDate) {
  return day.format(new Date(`${isoDate}T00:00:00Z`));
}

/** Seconds as "45 s", "3 min 20 s", "2 h 5 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) {
    return MISSING;
  }
  const s = Math.round(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ${s % 60} s`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  return `${whole.format(Math.floor(s / 86400))} d ${Math.floor((s % 86400) / 3600)} h`;
}
