// A service's own bearer token, kept current: read from a file an identity
// provider's agent rewrites (a Kubernetes projected token, a sidecar doing
// the client-credentials grant), given once, or minted and renewed in
// process. Callers read `current()` per call; it never waits.
import { readFile, stat } from "node:fs/promises";
import type { Logger } from "../logger.js";

export interface TokenSource {
  /** The token to send now. */
  current(): string;
  /** Stops renewing. */
  close(): void;
}

/** A token given once (PARLEY_BRIDGE_TOKEN); it works until it expires. */
export function fixedToken(token: string): TokenSource {
  return { current: () => token, close: () => undefined };
}

/** How often a token file is checked for a new token. */
const FILE_POLL_MS = 10_000;

/**
 * A token read from `path`, re-read whenever the file changes (checked
 * every 10 s by modification time). An unreadable or empty file fails at
 * start; later, a failed read keeps the last token and logs why.
 */
export async function tokenFromFile(path: string, logger: Logger): Promise<TokenSource> {
  const read = async (): Promise<string> => {
    const token = (await readFile(path, "utf8")).trim();
    if (token === "") throw new Error(`token file ${path} is empty`);
    return token;
  };
  let token = await read();
  let modified = (await stat(path)).mtimeMs;
  const timer = setInterval(() => {
    void (async () => {
      const now = (await stat(path)).mtimeMs;
      if (now === modified) return;
      token = await read();
      modified = now;
      logger.info({ path }, "own token re-read");
    })().catch((error: unknown) => {
      logger.warn({ path, err: error }, "own token file could not be re-read; keeping the last token");
    });
  }, FILE_POLL_MS);
  timer.unref();
  return {
    current: () => token,
    close: () => {
      clearInterval(timer);
    },
  };
}

/**
 * A token minted by `mint` (lifetime `lifetimeSeconds`) and minted again at
 * half its lifetime, so the current one is never near its expiry.
 */
export async function renewedToken(mint: () => Promise<string>, lifetimeSeconds: number, logger: Logger): Promise<TokenSource> {
  let token = await mint();
  const timer = setInterval(() => {
    mint().then(
      (fresh) => (token = fresh),
      (error: unknown) => {
        logger.error({ err: error }, "own token could not be renewed; keeping the last one");
      },
    );
  }, (lifetimeSeconds * 1000) / 2);
  timer.unref();
  return {
    current: () => token,
    close: () => {
      clearInterval(timer);
    },
  };
}
