// The two small sites of the browser suite, each a node:http server on a loopback port:
//
// - a relying party, the client app of the code flow: `/login` makes a PKCE verifier and
//   challenge (S256) and a state, and sends the browser to the authorization endpoint;
//   `/callback` checks the state and the `iss` (RFC 9207), exchanges the code at the token
//   endpoint, calls `/userinfo` and shows who signed in. It has no script either, so it works
//   with JavaScript off.
// - a page of another origin that posts a form to the service's `/sign-in` as soon as it loads
//   (a cross-site request forgery, with the victim's cookies).

import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

const base64url = (bytes) => bytes.toString('base64url');

const escapeHtml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function html(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>` +
    `<body><main>${body}</main></body></html>`);
}

/** Listens on a free loopback port; resolves to `{ origin, close }`. */
function listen(handler) {
  const server = createServer((req, res) => {
    handler(req, res).catch((e) => html(res, 500, 'Error', `<p id="error">${escapeHtml(e.stack ?? e)}</p>`));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        origin: `http://127.0.0.1:${port}`,
        close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
      });
    });
  });
}

/**
 * The relying party of `clientId` at the authorization server `issuer`.
 * `/login?ui_locales=de` passes the language on to the authorization request.
 */
export async function startRelyingParty({ issuer, clientId }) {
  const pending = new Map(); // state -> code verifier
  let redirectUri;
  const site = await listen(async (req, res) => {
    const url = new URL(req.url, redirectUri);
    if (url.pathname === '/login') {
      const verifier = base64url(randomBytes(32));
      const challenge = base64url(createHash('sha256').update(verifier).digest());
      const state = base64url(randomBytes(16));
      pending.set(state, verifier);
      const authorize = new URL('/oauth/authorize', issuer);
      const params = new URLSearchParams({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: redirectUri,
        scope: 'bookings:read',
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256',
      });
      const locales = url.searchParams.get('ui_locales');
      if (locales) params.set('ui_locales', locales);
      authorize.search = params.toString();
      res.writeHead(303, { location: authorize.href, 'cache-control': 'no-store' });
      res.end();
      return;
    }
    if (url.pathname === '/callback') {
      const state = url.searchParams.get('state') ?? '';
      const verifier = pending.get(state);
      pending.delete(state);
      if (!verifier) return html(res, 400, 'Refused', '<p id="error">unknown or reused state</p>');
      if (url.searchParams.get('iss') !== issuer) {
        return html(res, 400, 'Refused', `<p id="error">wrong iss: ${escapeHtml(url.searchParams.get('iss'))}</p>`);
      }
      if (url.searchParams.has('error')) {
        return html(res, 400, 'Refused', `<p id="error">${escapeHtml(url.searchParams.get('error'))}</p>`);
      }
      const token = await fetch(new URL('/oauth/token', issuer), {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          client_id: clientId,
          code: url.searchParams.get('code') ?? '',
          redirect_uri: redirectUri,
          code_verifier: verifier,
        }),
      });
      const tokens = await token.json();
      if (!token.ok) return html(res, 502, 'Refused', `<p id="error">token: ${escapeHtml(JSON.stringify(tokens))}</p>`);
      const info = await fetch(new URL('/userinfo', issuer), { headers: { authorization: `Bearer ${tokens.access_token}` } });
      const user = await info.json();
      if (!info.ok) return html(res, 502, 'Refused', `<p id="error">userinfo: ${escapeHtml(JSON.stringify(user))}</p>`);
      return html(res, 200, 'Signed in',
        `<h1>Signed in as <span id="username">${escapeHtml(user.preferred_username)}</span></h1>` +
        '<noscript><p id="noscript">(scripting is off)</p></noscript>');
    }
    html(res, 404, 'Not found', '<p>Not found</p>');
  });
  redirectUri = `${site.origin}/callback`;
  return { ...site, redirectUri };
}

/**
 * A site of another origin whose `/` posts `fields` to `action` on load. Its page is not under
 * the service's CSP, so its own script runs.
 */
export async function startForeignSite() {
  let form = { action: 'about:blank', fields: {} };
  const site = await listen(async (req, res) => {
    const inputs = Object.entries(form.fields)
      .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
      .join('');
    html(res, 200, 'You won a prize',
      `<form method="post" action="${escapeHtml(form.action)}">${inputs}<button>Claim</button></form>` +
      '<script>document.forms[0].submit()</script>');
  });
  return { ...site, setForm: (next) => { form = next; } };
}
