// A real, OpenID Certified provider (panva's oidc-provider) for the test suite, configured either
// like an Auth0 tenant or as a provider that follows only the standards.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: port, issuer (with or without a trailing slash, kept as written), jwks (a file of
// private keys, the first signs: restart with another file to rotate or revoke), profile
// ("auth0" or "standard"), audience (the API's resource), adminClaim, redirectUris,
// swaggerRedirectUris (Swagger UI's public client), postLogoutRedirectUris. Started by
// tests/oidc/harness.py, which waits for "listening".
//
// "auth0": Auth0's `audience` parameter names the resource (and the granted one is used at the
// token endpoint), access tokens carry typ JWT, aud [API, /userinfo], azp and no client_id.
// "standard": only RFC 8707's `resource`; RFC 9068 access tokens (typ at+jwt).
// Both: email, email_verified and the admin claim added to access tokens, as an Auth0 Action
// does. A login starting with "admin" is an admin; one containing "unverified" has an unverified
// email. Logins without "@" become LOGIN@example.com.
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwks = JSON.parse(readFileSync(config.jwks, 'utf8'));
const auth0 = config.profile === 'auth0';

function profileOf(accountId) {
  const email = accountId.includes('@') ? accountId : `${accountId}@example.com`;
  return {
    sub: accountId,
    email,
    email_verified: !accountId.includes('unverified'),
    name: accountId.split('@')[0],
    admin: accountId.startsWith('admin'),
  };
}

const provider = new Provider(config.issuer, {
  jwks,
  cookies: { keys: ['dmarket-test-provider-cookie-key'] },
  clients: [
    {
      client_id: 'dmarket-web',
      client_secret: 'dmarket-web-secret',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: config.redirectUris,
      post_logout_redirect_uris: config.postLogoutRedirectUris,
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      // Swagger UI's Authorize: a public client (no secret, PKCE), as an Auth0 Single Page Application.
      client_id: 'dmarket-swagger',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: config.swaggerRedirectUris,
      token_endpoint_auth_method: 'none',
    },
    {
      client_id: 'dmarket-machine',
      client_secret: 'dmarket-machine-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: false, // the ID token carries email and name, as Auth0's does
  extraParams: auth0 ? ['audience'] : [],
  async findAccount(_ctx, sub) {
    const { admin, ...claims } = profileOf(sub);
    return { accountId: sub, claims: async () => claims };
  },
  async extraTokenClaims(_ctx, token) {
    if (!token.accountId) return undefined;
    const { email, email_verified: verified, admin } = profileOf(token.accountId);
    return { email, email_verified: verified, ...(admin ? { [config.adminClaim]: { is_admin: true } } : {}) };
  },
  features: {
    devInteractions: { enabled: true }, // the provider's own login and consent pages
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(ctx, _client, oneOf) {
        return (auth0 && ctx.oidc.params?.audience) || oneOf;
      },
      async useGrantedResource() {
        return auth0; // Auth0 needs no resource at the token endpoint
      },
      async getResourceServerInfo(_ctx, indicator) {
        if (indicator !== config.audience) throw new errors.InvalidTarget();
        return {
          scope: 'read:products write:products',
          audience: indicator,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  formats: {
    customizers: {
      async jwt(_ctx, token, jwt) {
        if (!auth0 || token.kind === 'IdToken') return;
        const issuer = config.issuer.replace(/\/$/, '');
        jwt.header = { typ: 'JWT' };
        jwt.payload.aud = [jwt.payload.aud, `${issuer}/userinfo`];
        jwt.payload.azp = jwt.payload.client_id;
        delete jwt.payload.client_id;
      },
    },
  },
});
provider.proxy = false;
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

provider.listen(config.port, '127.0.0.1', () => console.log('listening'));
