// Swagger UI at /openapi/, told who is signed in (app/console.py renders the settings this reads).
// Local mode: a short-lived bearer token of the signed-in user (POST /session/token) authorizes
// Swagger UI, so Try it out and the curl command it shows carry the same credential.
// Auth0 mode: Authorize signs in at the issuer (authorization code + PKCE) with the public client.
(function () {
  "use strict";

  const settings = JSON.parse(document.getElementById("dmarket-console").textContent);
  const banner = document.getElementById("dmarket-session");
  const RENEW_BEFORE_SECONDS = 60;
  let minted = null; // {token, expiresAt, user}
  let oauthUser = null; // who the token from Authorize names (GET /me with it)
  let ui = null;

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text) node.textContent = text;
    Object.entries(attributes || {}).forEach(([name, value]) => node.setAttribute(name, value));
    return node;
  }

  function who(user) {
    const name = user.email || user.user_id;
    return user.is_admin ? `${name} (admin)` : name;
  }

  function authorized() {
    return ui ? ui.authSelectors.authorized().toJS() : {};
  }

  function render() {
    const auth = authorized();
    const bearer = auth.bearerAuth && auth.bearerAuth.value;
    const oauth = auth[settings.oauthScheme] && auth[settings.oauthScheme].token;
    const parts = [];
    const add = (node) => parts.push(typeof node === "string" ? document.createTextNode(node) : node);
    banner.className = "";
    if (minted && bearer === minted.token) {
      const minutes = Math.max(1, Math.round((minted.expiresAt - Date.now()) / 60000));
      add("Signed in as ");
      add(element("strong", who(minted.user), { "data-user": minted.user.email || "" }));
      add(" by this browser's session (development sign-in). Try it out sends a bearer token minted for you " +
          `(valid ${minutes} more minutes, renewed while this page is open), and each curl command shown carries it too.`);
    } else if (oauth && oauth.access_token) {
      add("Authorized");
      if (oauthUser) {
        add(" as ");
        add(element("strong", who(oauthUser), { "data-user": oauthUser.email || "" }));
      }
      add(" by an access token from the identity provider (Authorize): Try it out sends it, and each curl command " +
          "shown carries it too.");
      if (settings.signedIn) add(` This browser's session is ${who(settings.signedIn)}'s.`);
    } else if (bearer) {
      add("Try it out sends the bearer token pasted in Authorize, and each curl command shown carries it too.");
      if (settings.signedIn) add(` This browser's session is ${who(settings.signedIn)}'s.`);
    } else if (settings.signedIn) {
      add("Signed in as ");
      add(element("strong", who(settings.signedIn), { "data-user": settings.signedIn.email || "" }));
      add(" by this browser's session: Try it out works with the session cookie, but curl commands carry no " +
          "credential. ");
      add(settings.oauth ? "Press Authorize and sign in (signIn) for a token that both send."
                         : "Paste an access token into Authorize for commands that work as copied.");
    } else {
      banner.className = "signed-out";
      add("Not signed in.");
      add(element("a", "Sign in", { href: settings.signInUrl, id: "dmarket-sign-in" }));
      if (settings.mode === "local") {
        add(" (open the link the server logs: it carries the sign-in code), or run ");
        add(element("code", "flask auth token EMAIL"));
        add(" and paste the token into Authorize.");
      } else if (settings.oauth) {
        add(" with this browser, or press Authorize to sign in for Swagger UI alone.");
      }
    }
    if (settings.signedIn || minted) {
      add(element("a", "Sign out", { href: settings.signOutUrl, id: "dmarket-sign-out" }));
    }
    if (settings.hostHint) add(element("span", settings.hostHint, { class: "hint" }));
    banner.replaceChildren(...parts);
  }

  async function mint() {
    const response = await fetch(settings.tokenUrl, { method: "POST", credentials: "same-origin" });
    if (!response.ok) {
      minted = null;
      settings.signedIn = null; // the session ended meanwhile: say so rather than send a dead token
      ui.authActions.logout(["bearerAuth"]);
      render();
      return;
    }
    const body = await response.json();
    minted = { token: body.access_token, expiresAt: Date.now() + body.expires_in * 1000, user: body.user };
    ui.preauthorizeApiKey("bearerAuth", body.access_token);
    const renewIn = Math.max(10, body.expires_in - RENEW_BEFORE_SECONDS) * 1000;
    window.setTimeout(mint, renewIn);
    render();
  }

  async function identifyOauthToken() {
    const oauth = authorized()[settings.oauthScheme];
    const token = oauth && oauth.token && oauth.token.access_token;
    oauthUser = null;
    if (token) {
      const response = await fetch("/me", { headers: { Authorization: `Bearer ${token}` }, credentials: "omit" });
      if (response.ok) oauthUser = await response.json();
    }
    render();
  }

  // Re-render whenever Swagger UI's authorizations change (Authorize, Logout, the OAuth2 popup's return).
  const watchAuthorizations = () => ({
    statePlugins: {
      auth: {
        wrapActions: {
          authorize: (action) => (payload) => { const result = action(payload); window.setTimeout(render); return result; },
          logout: (action) => (payload) => { const result = action(payload); window.setTimeout(render); return result; },
          authorizeOauth2: (action) => (payload) => {
            const result = action(payload);
            window.setTimeout(identifyOauthToken);
            return result;
          },
        },
      },
    },
  });

  ui = SwaggerUIBundle({
    url: new URL(settings.docUrl, window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl, watchAuthorizations],
    layout: "StandaloneLayout",
    showExtensions: true,
    showCommonExtensions: true,
    oauth2RedirectUrl: settings.oauth ? new URL(settings.oauth.redirectUrl, window.location.href).href : undefined,
    onComplete: () => {
      if (settings.tokenUrl && settings.signedIn) mint();
      render();
    },
  });
  window.ui = ui;
  if (settings.oauth) {
    ui.initOAuth({
      clientId: settings.oauth.clientId,
      scopes: settings.oauth.scopes,
      usePkceWithAuthorizationCodeGrant: settings.oauth.usePkceWithAuthorizationCodeGrant,
      additionalQueryStringParams: settings.oauth.additionalQueryStringParams,
    });
  }
  render();
})();
