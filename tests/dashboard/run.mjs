// Drives the admin dashboard in Debian's headless Chromium against a
// running processor (processor/tests/dashboard.rs seeds its database and
// starts it), and checks what a person would: the sign-in, the figures of
// each view against the API's own answers for the same range, top users
// to a user's page, "Load more" on the keyset cursor, acknowledging an
// alert, deep links across a reload, a wrong token, both layouts, the
// keyboard, and no console errors. Screenshots of every view at both
// widths go to SCREENSHOT_DIR.
//
//   DASHBOARD_URL=http://127.0.0.1:8080/admin/ ADMIN_TOKEN=... \
//   SCREENSHOT_DIR=target/dashboard-screenshots node tests/dashboard/run.mjs

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = required('DASHBOARD_URL');
const token = required('ADMIN_TOKEN');
const shots = required('SCREENSHOT_DIR');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// The seeded user with more activity than one page of recent activity.
const pagedUser = process.env.PAGED_USER || 'alice';
// The seeded user whose burst raised a `rate` alert.
const alertedUser = process.env.ALERTED_USER || 'mallory';

const origin = new URL(base).origin;
const API = `${origin}/api/v1/admin/user-activities`;
const WIDE = { width: 1280, height: 900 };
const NARROW = { width: 390, height: 844 };
const nf = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`set ${name}`);
    process.exit(2);
  }
  return value;
}

class Failure extends Error {}

function check(condition, message) {
  if (!condition) {
    throw new Failure(message);
  }
}

function same(actual, expected, what) {
  check(JSON.stringify(actual) === JSON.stringify(expected),
    `${what}: the page shows ${JSON.stringify(actual)}, the API says ${JSON.stringify(expected)}`);
}

async function api(path, { method = 'GET', auth = token } = {}) {
  const response = await fetch(`${API}${path}`, { method, headers: { authorization: `Bearer ${auth}` } });
  return { status: response.status, body: await response.json() };
}

async function apiOk(path) {
  const { status, body } = await api(path);
  check(status === 200, `GET ${path}: ${status} ${JSON.stringify(body)}`);
  return body;
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // launch() starts Chromium on a new temporary profile, removed at close.
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
});
const context = await browser.newContext({ locale: 'en-US', timezoneId: 'UTC', viewport: WIDE });
const page = await context.newPage();
page.setDefaultTimeout(15000);

const problems = [];
let expectAuthFailures = false;
page.on('console', (message) => {
  if (message.type() !== 'error') {
    return;
  }
  const text = message.text();
  // A refused token: Chromium logs the 401 the page then handles.
  if (expectAuthFailures && /status of 401/.test(text)) {
    return;
  }
  problems.push(`console error: ${text}`);
});
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));

async function text(selector) {
  return (await page.locator(selector).first().textContent()).trim();
}

async function texts(selector) {
  return (await page.locator(selector).allTextContents()).map((t) => t.trim());
}

async function until(what, predicate, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await predicate();
      if (last) {
        return last;
      }
    } catch (error) {
      last = error.message;
    }
    check(Date.now() < deadline, `timed out waiting for ${what} (last: ${last})`);
    await page.waitForTimeout(100);
  }
}

/** Opens a deep link and waits until the view is rendered. */
async function open(hash, ready) {
  await page.goto(`${base}${hash}`);
  await page.locator(ready).first().waitFor();
}

async function shoot(name) {
  for (const [label, size] of [['1280', WIDE], ['390', NARROW]]) {
    await page.setViewportSize(size);
    await page.waitForTimeout(150);
    if (label === '390') {
      const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      check(scroll <= inner, `${name} at 390 px scrolls sideways (${scroll} px wide)`);
    }
    await page.screenshot({ path: join(shots, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(WIDE);
}

const steps = [];
async function step(name, body) {
  const started = Date.now();
  await body();
  steps.push(name);
  console.log(`ok: ${name} (${Date.now() - started} ms)`);
}

try {
  await mkdir(shots, { recursive: true });

  await step('the page is served with a strict policy and asks for a token', async () => {
    const response = await page.goto(base);
    const headers = response.headers();
    check(headers['content-security-policy']?.includes("script-src 'self'"), `CSP: ${headers['content-security-policy']}`);
    check(headers['x-content-type-options'] === 'nosniff', 'nosniff');
    check(headers['referrer-policy'] === 'no-referrer', 'referrer policy');
    await page.locator('#sign-in').waitFor();
    check(await page.locator('#sign-in-token').isVisible(), 'the token field is shown');
    await shoot('sign-in');
  });

  await step('sign in; the overview shows the API\'s figures', async () => {
    await page.locator('#sign-in-token').fill(token);
    await page.locator('#sign-in-submit').click();
    await page.locator('[data-figure="today_activities"]').waitFor();
    const status = await apiOk('/queue-status');
    const open = await apiOk('/alerts?status=open&limit=500');
    same(await text('[data-figure="today_activities"]'), nf.format(status.today_activities), 'activities today');
    same(await text('[data-figure="active_users_today"]'), nf.format(status.active_users_today), 'active users today');
    same(await text('[data-figure="dead_letter_length"]'), nf.format(status.dead_letter_length), 'dead letters');
    same(await text('[data-figure="queue_length"]'), nf.format(status.queue_length), 'queue length');
    same(await text('[data-figure="pending"]'), nf.format(status.pending), 'pending');
    check(open.alerts.length > 0, 'the seeded alert is open');
    same(await text('[data-figure="open_alerts"]'), nf.format(open.alerts.length), 'open alerts');
    check(status.today_activities >= 1000, 'the seed has thousands today, to see the separators');
    check((await text('[data-figure="today_activities"]')).includes(','), 'thousands separator');
    const stored = await page.evaluate(() => ({ cookie: document.cookie, local: localStorage.length, url: location.href }));
    same(stored.cookie, '', 'cookies');
    same(stored.local, 0, 'localStorage entries');
    check(!stored.url.includes(token), 'the token is not in the URL');
  });

  await step('the overview refreshes every 5 s in place', async () => {
    const figure = page.locator('[data-figure="today_activities"]');
    await figure.evaluate((element) => { element.dataset.marker = 'kept'; });
    const before = await text('[data-updated]');
    await until('a refresh', async () => (await text('[data-updated]')) !== before, 12000);
    same(await figure.getAttribute('data-marker'), 'kept', 'the refreshed figure is the same element');
    await shoot('overview');
  });

  await step('the keyboard reaches the navigation', async () => {
    await page.locator('body').focus();
    let reached = false;
    for (let i = 0; i < 20 && !reached; i += 1) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.textContent?.trim() === 'Statistics');
    }
    check(reached, 'Tab reaches the Statistics link');
    await page.keyboard.press('Enter');
    await until('the statistics view', async () => page.url().includes('#/statistics'));
    await page.locator('[data-figure="total_activities"]').waitFor();
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, button')]
      .filter((el) => el.offsetParent !== null)
      .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
      .map((el) => el.outerHTML.slice(0, 80)));
    same(unlabelled, [], 'controls without a label');
  });

  for (const days of [7, 30]) {
    await step(`statistics of ${days} days equal the API's`, async () => {
      await page.locator('#statistics-range').selectOption(String(days));
      await until(`days=${days} in the link`, async () => page.url().endsWith(`#/statistics?days=${days}`));
      const stats = await apiOk(`/statistics?days=${days}`);
      const usage = await apiOk(`/actions?days=${days}`);
      await until('the range\'s figures', async () => (await text('[data-figure="total_activities"]')) === nf.format(stats.total_activities));
      same(await text('[data-figure="active_users"]'), nf.format(stats.active_users), 'active users');
      same(await text('[data-figure="today_activities"]'), nf.format(stats.today_activities), 'activities today');
      const daily = await page.locator('table.daily tbody tr').evaluateAll((rows) => rows.map((row) =>
        [...row.cells].map((cell) => cell.textContent.trim())));
      same(daily, stats.daily.map((d) => [d.date, nf.format(d.count), nf.format(d.active_users)]), 'daily figures');
      const hours = await page.locator('figure svg rect.column title').allTextContents();
      same(hours, stats.hourly.map((n, hour) => `${String(hour).padStart(2, '0')}: ${nf.format(n)} activities`), 'hourly bars');
      const breakdown = await page.locator('ol[aria-label="Activities per action"] li').evaluateAll((items) => items.map((li) =>
        [li.dataset.label, li.querySelector('.bar-count').textContent]));
      const expected = Object.entries(stats.activity_breakdown).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      same(breakdown, expected.map(([action, n]) => [action, nf.format(n)]), 'action breakdown, sorted');
      const features = await page.locator('ol[aria-label="Distinct users per action"] li').evaluateAll((items) => items.map((li) =>
        [li.dataset.label, li.querySelector('.bar-count').textContent]));
      const byUsers = [...usage.actions].sort((a, b) => b.user_count - a.user_count || a.action.localeCompare(b.action));
      same(features, byUsers.map((a) => [a.action, nf.format(a.user_count)]), 'feature usage, sorted');
      if (days === 30) {
        await shoot('statistics');
      }
    });
  }

  let topUser;
  await step('top users equal the API\'s; one opens its page', async () => {
    await open('#/top-users?days=30', 'table.top-users tbody tr');
    const top = await apiOk('/top-users?days=30&limit=10');
    const rows = await page.locator('table.top-users tbody tr').evaluateAll((trs) => trs.map((tr) =>
      [tr.cells[1].textContent.trim(), tr.cells[2].textContent.trim(), tr.cells[3].textContent.trim()]));
    same(rows, top.users.map((u) => [u.user_id, nf.format(u.activity_count), nf.format(u.action_types)]), 'top users');
    await shoot('top-users');
    topUser = top.users[0].user_id;
    await page.locator('table.top-users tbody tr').first().locator('a').click();
    await until('the user page', async () => page.url().endsWith(`#/user/${encodeURIComponent(topUser)}?days=30`));
    await page.locator('[data-figure="total_activities"]').waitFor();
    same(await text('h1 .user-id'), topUser, 'the user shown');
    const stats = await apiOk(`/user/${encodeURIComponent(topUser)}?days=30&limit=25`);
    const profile = await apiOk(`/user/${encodeURIComponent(topUser)}/profile?days=30&tz=UTC`);
    same(await text('[data-figure="total_activities"]'), nf.format(stats.total_activities), 'the user\'s activities');
    same(await text('[data-figure="risk_score"]'), `${profile.risk_score.score} / 100`, 'risk score');
    same(await text('[data-figure="activity_level"]'), profile.activity_level, 'activity level');
    same(await texts('table.risk-factors tbody tr td:first-child'), profile.risk_score.factors.map((f) => f.name), 'risk factors');
    const ips = await page.locator('table.ips tbody tr').evaluateAll((trs) => trs.map((tr) =>
      [tr.cells[0].textContent.trim(), tr.cells[1].textContent.trim()]));
    same(ips, stats.ip_addresses.map((ip) => [ip.ip_address, nf.format(ip.count)]), 'addresses');
    const path = await apiOk(`/user/${encodeURIComponent(topUser)}/path?days=30&limit=200`);
    same(await page.locator('ol.timeline li').count(), path.steps.length, 'steps of the action path');
  });

  await step(`"Load more" pages ${pagedUser}'s recent activity on the cursor`, async () => {
    await open(`#/user/${pagedUser}?days=30`, 'table.recent tbody tr');
    const all = [];
    let cursor = null;
    do {
      const page1 = await apiOk(`/user/${pagedUser}?days=30&limit=25${cursor ? `&cursor=${cursor}` : ''}`);
      all.push(...page1.recent.map((r) => r.id));
      cursor = page1.next_cursor;
    } while (cursor);
    check(all.length > 50, `${pagedUser} has more than two pages (${all.length})`);
    same(await page.locator('table.recent tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.id)), all.slice(0, 25), 'first page');
    await page.locator('button.load-more').click();
    await until('the second page', async () => (await page.locator('table.recent tbody tr').count()) === 50);
    same(await page.locator('table.recent tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.id)), all.slice(0, 50), 'two pages');
    while (await page.locator('button.load-more').isVisible()) {
      const count = await page.locator('table.recent tbody tr').count();
      await page.locator('button.load-more').click();
      await until('another page', async () => (await page.locator('table.recent tbody tr').count()) > count);
    }
    same(await page.locator('table.recent tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.id)), all, 'every page, no duplicates');
    check(await page.locator('.more .end').isVisible(), 'the end says there is no older activity');
    await shoot('user');
  });

  await step('an empty range says why', async () => {
    await open('#/user/nobody-at-all?days=7', '.empty');
    same(await text('.empty'), 'No activity by nobody-at-all in the last 7 days.', 'empty state');
  });

  await step(`acknowledge ${alertedUser}'s alert`, async () => {
    await open('#/alerts', 'table.alerts, .empty');
    await page.locator('#alerts-status').selectOption('open');
    await page.locator('#alerts-rule').fill('rate');
    await page.locator('button[type="submit"]', { hasText: 'Apply filters' }).click();
    await until('the filter in the link', async () => page.url().includes('rule=rate'));
    const list = await apiOk('/alerts?status=open&rule=rate');
    const alert = list.alerts.find((a) => a.group_value === alertedUser);
    check(alert, `the API lists ${alertedUser}'s open rate alert`);
    const row = page.locator(`table.alerts tr[data-id="${alert.id}"]`);
    await row.waitFor();
    same(await page.locator('table.alerts tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.id)), list.alerts.map((a) => a.id), 'the filtered list');
    same((await row.locator('td').nth(4).textContent()).trim(), nf.format(alert.count), 'events of the alert');
    await shoot('alerts');
    await row.locator('button.ack').click();
    await until('the acknowledged status', async () => (await row.locator('[data-status]').textContent()).trim() === 'acknowledged');
    const after = await apiOk(`/alerts/${alert.id}`);
    same(after.status, 'acknowledged', 'the alert\'s status in the API');
  });

  await step('deep links survive a reload', async () => {
    await open(`#/user/${pagedUser}?days=30`, '[data-figure="total_activities"]');
    await page.reload();
    await page.locator('[data-figure="total_activities"]').waitFor();
    same(await text('h1 .user-id'), pagedUser, 'user after reload');
    same(await page.locator('#user-range').inputValue(), '30', 'range after reload');
    await open('#/statistics?days=90', '[data-figure="total_activities"]');
    await page.reload();
    const stats = await apiOk('/statistics?days=90');
    await until('the 90-day figures', async () => (await text('[data-figure="total_activities"]')) === nf.format(stats.total_activities));
    same(await page.locator('#statistics-range').inputValue(), '90', 'range after reload');
    check(page.url().endsWith('#/statistics?days=90'), 'the link is kept');
  });

  await step('a wrong token brings the sign-in back with the API\'s message', async () => {
    const wrong = 'not-the-admin-token';
    const refused = await api('/queue-status', { auth: wrong });
    same(refused.status, 401, 'the API refuses the wrong token');
    expectAuthFailures = true;
    await page.locator('#sign-out').click();
    await page.locator('#sign-in').waitFor();
    same(await text('#sign-in-message'), 'Signed out.', 'after signing out');
    await page.locator('#sign-in-token').fill(wrong);
    await page.locator('#sign-in-submit').click();
    await until('the API\'s message', async () => (await text('#sign-in-message')) === refused.body.message);
    check(await page.locator('#sign-in').isVisible(), 'the sign-in stays');
    // A token refused while a view loads: the same, and the link is kept.
    await page.evaluate((value) => sessionStorage.setItem('activity-admin-token', value), wrong);
    await page.goto(`${base}#/top-users?days=7`);
    await until('the sign-in after a refused call', async () => (await text('#sign-in-message')) === refused.body.message);
    check(page.url().endsWith('#/top-users?days=7'), 'the deep link is kept for after the sign-in');
    await page.locator('#sign-in-token').fill(token);
    await page.locator('#sign-in-submit').click();
    await page.locator('table.top-users').waitFor();
    expectAuthFailures = false;
  });

  check(problems.length === 0, `the browser reported:\n  ${problems.join('\n  ')}`);
  console.log(`dashboard: ${steps.length} passed, 0 failed`);
} catch (error) {
  await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  console.error(`dashboard: ${steps.length} passed, 1 failed`);
  console.error(error instanceof Failure ? `FAILED: ${error.message}` : error);
  if (problems.length > 0) {
    console.error(`the browser also reported:\n  ${problems.join('\n  ')}`);
  }
  await browser.close();
  process.exit(1);
}
await browser.close();
