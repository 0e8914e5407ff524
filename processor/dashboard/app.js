// The dashboard's shell: sign-in, the route of the location's hash to a
// view, the navigation, errors. Each view module renders into <main>
// once its data arrived (`render(main, route, ctx)`), and may return a
// handle whose `dispose()` stops its timers when another view comes.

import { AuthError, call, clearToken, setToken, token } from './api.js';
import { empty, h } from './dom.js';
import { href, navigate, parseRoute } from './route.js';
import * as alerts from './view-alerts.js';
import * as overview from './view-overview.js';
import * as statistics from './view-statistics.js';
import * as topUsers from './view-top-users.js';
import * as user from './view-user.js';

const VIEWS = {
  overview: { module: overview, title: 'Overview' },
  statistics: { module: statistics, title: 'Statistics' },
  'top-users': { module: topUsers, title: 'Top users' },
  user: { module: user, title: 'User' },
  alerts: { module: alerts, title: 'Alerts' },
};

const main = document.getElementById('main');
const signIn = document.getElementById('sign-in');
const signInForm = document.getElementById('sign-in-form');
const signInMessage = document.getElementById('sign-in-message');
const signInToken = document.getElementById('sign-in-token');
const signInSubmit = document.getElementById('sign-in-submit');

/** The view on screen's handle, and a counter that makes older renders stale. */
let current = null;
let generation = 0;

function stopCurrent() {
  if (current && typeof current.dispose === 'function') {
    current.dispose();
  }
  current = null;
}

function showSignIn(message) {
  stopCurrent();
  generation += 1;
  document.body.classList.add('signed-out');
  main.replaceChildren();
  signIn.hidden = false;
  signInMessage.textContent = message ?? '';
  signInMessage.hidden = !message;
  document.title = 'Sign in · Activity admin';
  signInToken.focus();
}

/** A 401 or 403: the token is dropped and the sign-in says why. */
function authFailed(error) {
  clearToken();
  showSignIn(error.message);
}

function showError(error) {
  main.replaceChildren(
    h('h1', { tabindex: '-1', text: 'Something went wrong' }),
    h('p', { class: 'message', role: 'alert', 'data-error': error.code ?? 'error', text: error.message }),
    h('p', null, h('a', { href: window.location.hash || '#/overview', text: 'Try again' })));
}

function fail(error) {
  if (error instanceof AuthError) {
    authFailed(error);
  } else {
    showError(error);
  }
}

function markNavigation(name) {
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    if (link.dataset.view === name) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
}

async function show({ focus } = { focus: false }) {
  if (!token()) {
    showSignIn();
    return;
  }
  stopCurrent();
  signIn.hidden = true;
  document.body.classList.remove('signed-out');
  const route = parseRoute(window.location.hash);
  const view = VIEWS[route.name];
  markNavigation(route.name);
  generation += 1;
  const mine = generation;
  if (!view) {
    document.title = 'Not found · Activity admin';
    main.replaceChildren(
      h('h1', { tabindex: '-1', text: 'No such view' }),
      empty(`${window.location.hash} is not a view of the dashboard.`),
      h('p', null, h('a', { href: href('overview'), text: 'Go to the overview' })));
    return;
  }
  document.title = `${route.name === 'user' && route.args[0] ? `User ${route.args[0]}` : view.title} · Activity admin`;
  main.setAttribute('aria-busy', 'true');
  const loading = h('p', { class: 'loading muted', text: 'Loading…' });
  // Shown only if the answer takes a moment, so a fast view does not blink.
  const spinner = setTimeout(() => {
    if (mine === generation) {
      main.replaceChildren(loading);
    }
  }, 300);
  const ctx = {
    isCurrent: () => mine === generation,
    isAuthError: (error) => error instanceof AuthError,
    authFailed,
    fail: (error) => {
      if (mine === generation) {
        fail(error);
      }
    },
  };
  try {
    const handle = await view.module.render(main, route, ctx);
    if (mine !== generation) {
      handle?.dispose?.();
      return;
    }
    current = handle;
    if (focus) {
      main.querySelector('h1')?.focus({ preventScroll: true });
    }
  } catch (error) {
    if (mine === generation) {
      fail(error);
    }
  } finally {
    clearTimeout(spinner);
    if (mine === generation) {
      main.removeAttribute('aria-busy');
    }
  }
}

signInForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const secret = signInToken.value.trim();
  if (!secret) {
    showSignIn('Paste an admin token.');
    return;
  }
  setToken(secret);
  signInSubmit.disabled = true;
  signInMessage.hidden = false;
  signInMessage.textContent = 'Checking the token…';
  try {
    await call('/queue-status');
    signInToken.value = '';
    await show({ focus: true });
  } catch (error) {
    clearToken();
    showSignIn(error.message);
  } finally {
    signInSubmit.disabled = false;
  }
});

document.getElementById('sign-out').addEventListener('click', () => {
  clearToken();
  showSignIn('Signed out.');
});

document.getElementById('user-search').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = document.getElementById('user-search-id');
  const id = input.value.trim();
  if (id) {
    input.value = '';
    navigate(href('user', [id], { days: 30 }));
  }
});

window.addEventListener('hashchange', () => show({ focus: true }));
show();
