// A real OpenID Provider for the SSO tests: the npm package oidc-provider (certified), configured
// with one confidential client and accounts whose "groups" claim names their teams.
// Usage: node provider.mjs PORT REDIRECT_URI   (prints "LISTENING <port>" when it accepts connections)
import Provider from 'oidc-provider';

const [port, redirectUri] = process.argv.slice(2);
const GROUPS = { alice: ['research'], bob: ['ops', 'research'], carol: [] };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'gpustack',
    client_secret: 'gpustack-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  conformIdTokenClaims: false, // put the scopes' claims into the ID token, not only into userinfo
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['gpustack-test-cookie-key'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, groups: GROUPS[id] ?? [] };
      },
    };
  },
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`LISTENING ${port}`));
