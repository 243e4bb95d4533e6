// A real OpenID provider for Lägesbild's sign-in tests: node-oidc-provider
// with the device authorization grant and the authorization code flow with
// PKCE, on loopback, over plain HTTP (loopback only).
//
//   node server.mjs CONFIG.json
//
// CONFIG: { "port": N, "state_dir": DIR, "rotate": bool,
//           "clients": [{ "client_id": ..., "redirect_uris": [...] }],
//           "users": [{ "login", "password", "sub", "name", "groups": [...] }] }
//
// Signing keys (RS256) live in STATE_DIR/keys.json and survive restarts; with
// "rotate" a new key is made and published first (it signs from now on), the
// old ones stay published. Besides the provider's own endpoints it serves:
//   GET/POST /interaction/:uid   a plain login form (no consent page: granted)
//   POST /test/sign              signs the JSON body's claims with the current
//                                key (or the header it names), for tests that
//                                need a token the flows won't issue (expired,
//                                another audience)
// It prints "listening <issuer>" once it serves.

import Provider from 'oidc-provider';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as querystring from 'node:querystring';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

fs.mkdirSync(config.state_dir, { recursive: true });
const keysFile = path.join(config.state_dir, 'keys.json');
let keys = fs.existsSync(keysFile) ? JSON.parse(fs.readFileSync(keysFile, 'utf8')) : [];
if (keys.length === 0 || config.rotate) {
  keys = [newKey(), ...keys];
  fs.writeFileSync(keysFile, JSON.stringify(keys));
}

const users = new Map(config.users.map((u) => [u.sub, u]));

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    token_endpoint_auth_method: 'none',
    // A browser console comes back over https; a command line is native.
    application_type: (c.redirect_uris ?? []).some((u) => u.startsWith('https://')) ? 'web' : 'native',
    grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: c.redirect_uris ?? ['http://127.0.0.1/callback'],
  })),
  jwks: { keys },
  claims: { openid: ['sub'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
  },
  async findAccount(ctx, sub) {
    const user = users.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, name: user.name, groups: user.groups };
      },
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { DeviceCode: 600, IdToken: 3600 },
});

async function formBody(ctx) {
  let raw = '';
  for await (const chunk of ctx.req) raw += chunk;
  return querystring.parse(raw);
}

function sign(header, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64(header)}.${b64(claims)}`;
  const key = crypto.createPrivateKey({ key: keys[0], format: 'jwk' });
  const signature = crypto.sign('sha256', Buffer.from(input), key).toString('base64url');
  return `${input}.${signature}`;
}

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (match) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.prompt.name === 'consent') {
      // Consent is the organisation's: grant what the client asked.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope('openid profile groups');
      const grantId = await grant.save();
      return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    if (ctx.method === 'POST' && match[2]) {
      const form = await formBody(ctx);
      const user = config.users.find((u) => u.login === form.login && u.password === form.password);
      if (!user) {
        ctx.status = 401;
        ctx.body = '<!DOCTYPE html><p>wrong login or password</p>';
        return undefined;
      }
      return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
    }
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><body><form method="post" action="/interaction/${match[1]}/login">
<input name="login" autofocus><input name="password" type="password"><button type="submit">Sign in</button></form></body></html>`;
    return undefined;
  }
  if (ctx.path === '/test/sign' && ctx.method === 'POST') {
    let raw = '';
    for await (const chunk of ctx.req) raw += chunk;
    const body = JSON.parse(raw);
    const header = { alg: 'RS256', typ: 'JWT', kid: keys[0].kid, ...(body.header ?? {}) };
    ctx.type = 'text';
    ctx.body = sign(header, body.claims);
    return undefined;
  }
  return next();
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
