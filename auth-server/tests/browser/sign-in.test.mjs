// The hosted sign-in pages in a real browser: headless Chromium (Debian's, at AUTH_CHROMIUM)
// driven by playwright-core against a live auth-server (AUTH_SERVER_URL, its issuer), with a
// relying party and a foreign site of the suite's own (relying-party.mjs). Started by the Rust
// test `browser_real` in auth-server's integration tests, which also creates the invitation the
// user signs up with (AUTH_INVITATION).
//
// What it shows:
// - the code flow end to end: the relying party's /login, the sign-in form filled with the
//   keyboard only (Tab, typing, Enter), the callback showing who signed in (code exchanged with
//   PKCE, /userinfo called); a second /login goes straight through on the browser session;
// - the same with JavaScript off;
// - a wrong password is announced (role=alert), the fields are marked aria-invalid, and the
//   focused field has a visible outline;
// - signing out asks first (no id_token_hint), ends the session; axe-core on both pages.
// - axe-core finds nothing on the sign-in page, the page with an error, the German page and an
//   error page;
// - a form on another origin posting to /sign-in with the victim's cookies (and even a leaked
//   CSRF token) gets 403 and no session;
// - ui_locales=de gives a German page with lang="de".
// Screenshots of each page go to AUTH_ARTIFACTS.

import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { startForeignSite, startRelyingParty } from './relying-party.mjs';

const issuer = requiredEnv('AUTH_SERVER_URL');
const clientId = process.env.AUTH_CLIENT_ID ?? 'booking-spa';
const invitation = requiredEnv('AUTH_INVITATION');
const artifacts = process.env.AUTH_ARTIFACTS ?? join(process.cwd(), 'target/browser-artifacts');
const executablePath = process.env.AUTH_CHROMIUM ?? '/usr/bin/chromium';

const username = 'alice';
const password = 'correct horse battery staple';

const axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let browser;
let rp;
let foreign;

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; this suite is run by auth-server's browser_real test`);
  return value;
}

before(async () => {
  await mkdir(artifacts, { recursive: true });
  const signUp = await fetch(new URL('/v1/users', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password, invitation }),
  });
  assert.equal(signUp.status, 201, `sign-up: ${await signUp.text()}`);
  rp = await startRelyingParty({ issuer, clientId });
  foreign = await startForeignSite();
  browser = await chromium.launch({
    executablePath,
    // As root on a closed network: no sandbox, and none of Chromium's own connections to Google.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
      '--disable-extensions',
    ],
  });
});

after(async () => {
  await browser?.close();
  await rp?.close();
  await foreign?.close();
});

async function newPage(options = {}) {
  const context = await browser.newContext({ locale: 'en-US', ...options });
  context.setDefaultTimeout(10_000);
  return { context, page: await context.newPage() };
}

async function screenshot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

const focusedId = (page) => page.locator(':focus').getAttribute('id');

/** The URL and status of each hop of the navigation that ended in `response`. */
function hops(response) {
  const chain = [];
  for (let request = response.request(); request; request = request.redirectedFrom()) {
    chain.unshift(request);
  }
  return Promise.all(chain.map(async (r) => [new URL(r.url()).origin + new URL(r.url()).pathname, (await r.response())?.status()]));
}

/** Opens the relying party's /login and checks that it lands on the sign-in form. */
async function openSignIn(page, query = '') {
  const response = await page.goto(`${rp.origin}/login${query}`);
  assert.equal(response.status(), 200);
  assert.ok(page.url().startsWith(`${issuer}/oauth/authorize?`), `not on the sign-in page: ${page.url()}`);
  await page.locator('form[action="/sign-in"]').waitFor();
  return response;
}

/** Fills and sends the form with the keyboard only, checking where the focus goes. */
async function signInWithKeyboard(page, name, secret) {
  await page.locator('body').focus().catch(() => {});
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'username', 'Tab from the page start reaches the username field first');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(name);
  await page.keyboard.press('Tab');
  assert.equal(await focusedId(page), 'password', 'Tab moves from the username to the password field');
  await page.keyboard.type(secret);
  const answered = page.waitForResponse((r) => r.url() === `${issuer}/sign-in` && r.request().method() === 'POST');
  await page.keyboard.press('Enter');
  return answered;
}

async function expectSignedIn(page) {
  await page.waitForURL(`${rp.origin}/callback?**`);
  await page.waitForLoadState();
  const error = await page.locator('#error').textContent({ timeout: 100 }).catch(() => null);
  assert.equal(error, null, `the relying party refused: ${error}`);
  assert.equal(await page.locator('#username').textContent(), username);
}

/** Fails with each of axe-core's findings on the page, if any. */
async function expectAccessible(page, name) {
  await page.addScriptTag({ content: axeSource });
  const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const report = violations
    .map((v) => `- ${v.id} (${v.impact}): ${v.help}\n  ${v.helpUrl}\n` +
      v.nodes.map((n) => `    at ${n.target.join(' ')}: ${n.html}\n      ${n.failureSummary?.replace(/\n/g, '\n      ')}`).join('\n'))
    .join('\n');
  assert.equal(violations.length, 0, `axe-core: ${violations.length} violation(s) on ${name} (${page.url()}):\n${report}`);
}

test('signs in with the keyboard only; a second /login goes straight through on the session', async () => {
  const { context, page } = await newPage();
  await openSignIn(page);
  assert.equal(await page.locator('h1').textContent(), 'Sign in');
  await screenshot(page, 'sign-in');

  const answered = await signInWithKeyboard(page, username, password);
  assert.equal(answered.status(), 303);
  await expectSignedIn(page);
  await screenshot(page, 'relying-party-signed-in');
  const session = (await context.cookies(issuer)).find((c) => c.name === 'auth_session');
  assert.ok(session, 'the browser holds a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');

  const again = await page.goto(`${rp.origin}/login`);
  assert.deepEqual(await hops(again), [
    [`${rp.origin}/login`, 303],
    [`${issuer}/oauth/authorize`, 303],
    [`${rp.origin}/callback`, 200],
  ], 'no sign-in form the second time');
  await expectSignedIn(page);
  await context.close();
});

test('a wrong password is announced, the fields are marked invalid, and focus is visible', async () => {
  const { context, page } = await newPage();
  await openSignIn(page);
  const answered = await signInWithKeyboard(page, username, 'not the password');
  assert.equal(answered.status(), 401);
  await page.waitForLoadState();

  const alert = page.getByRole('alert');
  assert.equal(await alert.textContent(), 'The username or password is not right.');
  for (const id of ['username', 'password']) {
    const field = page.locator(`#${id}`);
    assert.equal(await field.getAttribute('aria-invalid'), 'true', `#${id} is marked invalid`);
    assert.equal(await field.getAttribute('aria-describedby'), await alert.getAttribute('id'), `#${id} points at the message`);
  }
  assert.equal(await page.locator('#username').inputValue(), username, 'the username is kept');
  assert.equal(await page.locator('#password').inputValue(), '', 'the password is not sent back');

  // Keyboard focus must be visible: each field, reached with Tab, draws an outline.
  await page.locator('body').focus().catch(() => {});
  for (const id of ['username', 'password']) {
    await page.keyboard.press('Tab');
    assert.equal(await focusedId(page), id);
    const outline = await page.locator(`#${id}`).evaluate((el) => {
      const style = getComputedStyle(el);
      return { style: style.outlineStyle, width: style.outlineWidth, focusVisible: el.matches(':focus-visible') };
    });
    assert.ok(outline.focusVisible, `#${id} matches :focus-visible`);
    assert.notEqual(outline.style, 'none', `#${id} has an outline when focused: ${JSON.stringify(outline)}`);
    assert.notEqual(outline.width, '0px', `#${id} has an outline when focused: ${JSON.stringify(outline)}`);
  }
  await screenshot(page, 'sign-in-wrong-password');
  assert.equal((await context.cookies(issuer)).some((c) => c.name === 'auth_session'), false);
  await context.close();
});

test('axe-core finds no violation on the sign-in, error and German pages', async () => {
  // The pages' CSP forbids every script, axe's too: this context alone bypasses it.
  const { context, page } = await newPage({ bypassCSP: true });
  await openSignIn(page);
  await expectAccessible(page, 'the sign-in page');

  await page.locator('#username').fill(username);
  await page.locator('#password').fill('still not the password');
  const answered = page.waitForResponse((r) => r.url() === `${issuer}/sign-in` && r.request().method() === 'POST');
  await page.locator('button[type=submit]').click();
  assert.equal((await answered).status(), 401);
  await page.waitForLoadState();
  assert.equal(await page.getByRole('alert').textContent(), 'The username or password is not right.');
  await expectAccessible(page, 'the sign-in page with an error');

  const unknownClient = await page.goto(`${issuer}/oauth/authorize?response_type=code&client_id=nobody&redirect_uri=${encodeURIComponent(rp.redirectUri)}`);
  assert.equal(unknownClient.status(), 400);
  assert.match(await page.getByRole('alert').textContent(), /not known/);
  await screenshot(page, 'error-unknown-client');
  await expectAccessible(page, 'the error page');

  await openSignIn(page, '?ui_locales=de');
  await expectAccessible(page, 'the German sign-in page');
  await context.close();
});

test('signing out asks first, ends the session, and both pages pass axe-core', async () => {
  const { context, page } = await newPage({ bypassCSP: true });
  await openSignIn(page);
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(password);
  await page.locator('button[type=submit]').click();
  await expectSignedIn(page);
  assert.ok((await context.cookies(issuer)).some((c) => c.name === 'auth_session'));

  // Without an id_token_hint the service asks before it signs anyone out.
  const asked = await page.goto(`${issuer}/oauth/end-session`);
  assert.equal(asked.status(), 200);
  await screenshot(page, 'sign-out-confirmation');
  await expectAccessible(page, 'the sign-out page');
  const answered = page.waitForResponse((r) => r.url() === `${issuer}/sign-out` && r.request().method() === 'POST');
  await page.locator('button[type=submit]').click();
  assert.equal((await answered).status(), 200);
  await page.waitForLoadState();
  assert.match(await page.getByRole('status').textContent(), /signed out|close this window/i);
  await screenshot(page, 'signed-out');
  await expectAccessible(page, 'the signed-out page');
  assert.equal((await context.cookies(issuer)).some((c) => c.name === 'auth_session'), false, 'the cookie is gone');
  // The next sign-in shows the form again.
  await openSignIn(page);
  await context.close();
});

test('with JavaScript off the whole flow still works', async () => {
  const { context, page } = await newPage({ javaScriptEnabled: false });
  await openSignIn(page);
  await screenshot(page, 'sign-in-no-script');
  const answered = await signInWithKeyboard(page, username, password);
  assert.equal(answered.status(), 303);
  await expectSignedIn(page);
  assert.equal(await page.locator('#noscript').isVisible(), true, 'scripting really is off (<noscript> shows)');
  await screenshot(page, 'relying-party-signed-in-no-script');
  await context.close();
});

test('a form of another origin posting to /sign-in with the victim\'s cookies gets 403 and no session', async () => {
  const { context, page } = await newPage();
  await openSignIn(page);
  // Worst case: the attacker even knows the victim's CSRF token and the right password.
  const csrf = await page.locator('input[name=csrf]').inputValue();
  const authorization = await page.locator('input[name=authorization]').inputValue();
  foreign.setForm({ action: `${issuer}/sign-in`, fields: { csrf, authorization, username, password } });

  const posted = page.waitForRequest((r) => r.url() === `${issuer}/sign-in` && r.method() === 'POST');
  const answered = page.waitForResponse((r) => r.url() === `${issuer}/sign-in`);
  await page.goto(`${foreign.origin}/`);
  const headers = await (await posted).allHeaders();
  assert.match(headers.cookie ?? '', /(^|; )auth_csrf=/, 'the victim\'s CSRF cookie came along (same site, other origin)');
  assert.equal(headers.origin, foreign.origin);
  assert.equal((await answered).status(), 403);
  await page.waitForURL(`${issuer}/sign-in`);
  assert.match(await page.getByRole('alert').textContent(), /another site/);
  await screenshot(page, 'foreign-post-refused');

  assert.equal((await context.cookies(issuer)).some((c) => c.name === 'auth_session'), false, 'no session was started');
  await openSignIn(page);
  await context.close();
});

test('ui_locales=de gives the German page, lang="de"', async () => {
  const { context, page } = await newPage();
  await openSignIn(page, '?ui_locales=de');
  assert.equal(await page.locator('html').getAttribute('lang'), 'de');
  assert.equal(await page.locator('h1').textContent(), 'Anmelden');
  assert.equal(await page.locator('label[for=username]').textContent(), 'Benutzername');
  await screenshot(page, 'sign-in-de');
  await context.close();
});
