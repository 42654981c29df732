/**
 * Client authentication for the HTTP API, as one Hono middleware: with the
 * cluster's secret set, a request must carry it (or the token derived from
 * it) as `Authorization: Bearer …` — the rule lives in lib/transport's
 * `authorized()`; without a secret, only loopback clients are served.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { authorized, isLoopback } from "../transport/mod.ts";

/**
 * The middleware.
 *
 * @param authSecret the cluster's shared secret, or null (loopback clients only)
 */
export function clientAuth(authSecret: string | null): MiddlewareHandler {
  return async (c, next) => {
    if (authSecret !== null) {
      if (!authorized(c.req.header("authorization") ?? null, authSecret)) {
        return c.json({ error: "missing or bad bearer token" }, 401);
      }
    } else {
      const env = c.env as { remoteAddr?: { hostname?: string } } | undefined;
      if (!isLoopback(env?.remoteAddr?.hostname ?? null)) {
        return c.json(
          { error: "no pgraft.auth_secret is set: only loopback clients are served" },
          403,
        );
      }
    }
    await next();
  };
}
