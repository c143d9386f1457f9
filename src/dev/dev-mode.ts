import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { type ClientTransport, createClient, hasLoopbackHost, type Logger, logError, mintToken, NOTIFICATIONS_SEND_SCOPE, originAllowed, renewedToken, USER_ID } from "../runtime/index.js";
import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../wire/index.js";
import { buildDemo, type DemoAssets } from "./demo/build-demo.js";

/**
 * The token secret of the embedded mode: kept in the data directory so tokens
 * (and the demo's sessions) survive restarts. Development only.
 */
export function developmentSecret(dataDir: string): string {
  const file = join(dataDir, "dev-jwt-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = randomBytes(32).toString("base64url");
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

export interface DevHttp {
  /** Handles `/`, `/demo.js`, `POST /dev/token`, `POST /dev/notify`; false for anything else. */
  readonly handler: (request: IncomingMessage, response: ServerResponse) => boolean;
  close(): void;
}

/**
 * HTTP routes that exist only in the embedded (development) mode: the demo
 * page and two helpers for it — minting a token for any user name, and
 * sending that user a notification. Never started when DATABASE_URL is set.
 */
export async function developmentHttp(options: { secret: string; coreAddress: string; coreTransport?: ClientTransport | undefined; logger: Logger }): Promise<DevHttp> {
  const demo: DemoAssets = await buildDemo();
  const serviceToken = await renewedToken(() => mintToken(options.secret, "parley-demo", { scopes: [NOTIFICATIONS_SEND_SCOPE], expiresInSeconds: 3600 }), 3600, options.logger);
  const notifications = createClient(NotificationService, options.coreAddress, {
    ...options.coreTransport,
    headers: () => ({ authorization: `Bearer ${serviceToken.current()}` }),
  });
  let counter = 0;

  const handler = (request: IncomingMessage, response: ServerResponse): boolean => {
    const path = new URL(request.url ?? "/", "http://dev").pathname;
    if (request.method === "GET" && (path === "/" || path === "/index.html")) {
      send(response, 200, "text/html; charset=utf-8", demo.html);
      return true;
    }
    if (request.method === "GET" && path === "/demo.js") {
      send(response, 200, "text/javascript; charset=utf-8", demo.script);
      return true;
    }
    if (path.startsWith("/dev/")) {
      const refusal = foreignRequest(request);
      if (refusal !== undefined) {
        logError(options.logger, refusal, { path, host: request.headers.host, origin: request.headers.origin, peer: request.socket.remoteAddress }, `development request refused: ${refusal.message}`);
        send(response, 403, "application/json", JSON.stringify({ category: refusal.categoryName, message: refusal.message }));
        return true;
      }
    }
    if (request.method === "POST" && (path === "/dev/token" || path === "/dev/notify")) {
      void readJson(request)
        .then(async (body) => {
          const user = typeof body.user === "string" ? body.user : "";
          if (!USER_ID.test(user)) throw new Error("`user` must be a user id: letters, digits, _ . : @ -");
          if (path === "/dev/token") {
            return { token: await mintToken(options.secret, user, { expiresInSeconds: 12 * 3600 }) };
          }
          counter++;
          const title = typeof body.title === "string" && body.title !== "" ? body.title.slice(0, 200) : `Hello ${user}`;
          const sent = await notifications.sendNotification({
            recipients: [user],
            kind: "demo",
            title,
            body: "Sent from the demo page",
            idempotencyKey: `demo-${Date.now()}-${counter}`,
          });
          return { seq: sent.notifications[0]?.seq.toString() };
        })
        .then(
          (result) => {
            send(response, 200, "application/json", JSON.stringify(result));
          },
          (error: unknown) => {
            const message = error instanceof ParleyError || error instanceof Error ? error.message : String(error);
            send(response, 400, "application/json", JSON.stringify({ category: "VALIDATION", message }));
          },
        );
      return true;
    }
    return false;
  };
  options.logger.warn("development mode: /dev/token mints tokens for anyone; never expose this process");
  return {
    handler,
    close: () => {
      notifications.close();
      serviceToken.close();
    },
  };
}

/**
 * Why a /dev/* request is refused, or undefined when it comes from the demo
 * page or a program on this machine. A `Host` that is not a loopback name is
 * a browser led here by a name resolving to 127.0.0.1 (DNS rebinding); an
 * `Origin` other than the demo's own is another site's page posting here
 * (CSRF). Either could mint tokens or send notifications for anyone.
 */
function foreignRequest(request: IncomingMessage): ParleyError | undefined {
  if (!hasLoopbackHost(request.headers)) {
    return new ParleyError(ErrorCategory.PERMISSION_DENIED, "the development endpoints answer only requests addressed to localhost, 127.0.0.1 or [::1]");
  }
  if (!originAllowed(request.headers, { sameOrigin: "loopback" })) {
    return new ParleyError(ErrorCategory.PERMISSION_DENIED, "the development endpoints answer only the demo page served here, not pages of other origins");
  }
  return undefined;
}

function send(response: ServerResponse, status: number, type: string, body: string): void {
  response.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
  response.end(body);
}

function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let text = "";
    request.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      if (text.length > 4096) request.destroy(new Error("request body too large"));
    });
    request.on("end", () => {
      try {
        const value: unknown = JSON.parse(text === "" ? "{}" : text);
        resolve(typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {});
      } catch {
        reject(new Error("body must be JSON"));
      }
    });
    request.on("error", reject);
  });
}
