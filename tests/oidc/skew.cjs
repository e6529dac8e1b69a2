// `node --require ./skew.cjs`: the provider's clock runs OIDC_CLOCK_SKEW_SECONDS ahead (or behind).
const skew = Number(process.env.OIDC_CLOCK_SKEW_SECONDS || 0) * 1000;
const now = Date.now;
Date.now = () => now() + skew;
