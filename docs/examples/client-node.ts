/**
 * parley's client library from Node.js: joins a room, sends one message,
 * prints every message it receives until its own comes back, and exits.
 *
 *   npm start                                      # in another terminal
 *   node --import tsx docs/examples/client-node.ts
 *
 * Environment (all optional):
 *   PARLEY_URL    the bridge, default http://127.0.0.1:8080
 *   PARLEY_TOKEN  a JWT to use; without it the example asks the development
 *                 server (`npm start` without DATABASE_URL) for one: POST /dev/token
 *   PARLEY_USER   the user to ask /dev/token for, default node-example
 *   PARLEY_ROOM   default lobby
 *
 * Exits 0 once its own message came back through the room, 1 on a failure.
 */
import { WebSocket } from "ws";
import { type ChatMessage, ParleyClient, ParleyClientError, type SocketLike } from "parley/client";

const baseUrl = (process.env.PARLEY_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
const roomName = process.env.PARLEY_ROOM ?? "lobby";
const user = process.env.PARLEY_USER ?? "node-example";
const GIVE_UP_MS = 15_000;

/** The development server hands out tokens for any user name (never in production). */
async function developmentToken(): Promise<string> {
  const response = await fetch(`${baseUrl}/dev/token`, { method: "POST", body: JSON.stringify({ user }) }).catch((error: unknown) => {
    throw new Error(`could not reach ${baseUrl}/dev/token (is \`npm start\` running?): ${String(error)}`);
  });
  const body = (await response.json().catch(() => ({}))) as { token?: string; message?: string };
  if (!response.ok || body.token === undefined) {
    throw new Error(`POST ${baseUrl}/dev/token answered ${response.status}: ${body.message ?? "no token"} (is \`npm start\` running without DATABASE_URL?)`);
  }
  return body.token;
}

/** `promise`, or a rejection once the example's time is up (the client itself retries forever). */
function inTime<T>(promise: Promise<T>, what: string, deadline: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what}: not within ${GIVE_UP_MS} ms`));
    }, Math.max(0, deadline - Date.now()));
  });
  return Promise.race([promise, late]).finally(() => {
    clearTimeout(timer);
  });
}

function describe(message: ChatMessage): string {
  return `#${message.seq.toString()} ${message.sender}: ${message.body}`;
}

async function main(): Promise<void> {
  const token = process.env.PARLEY_TOKEN ?? (await developmentToken());
  const client = new ParleyClient({
    url: baseUrl.replace(/^http/, "ws"), // http://host:8080 -> ws://host:8080 (https -> wss)
    token,
    // Node 20 has no global WebSocket: the `ws` package provides one.
    socketFactory: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
  });
  const stopWatching = client.onStateChange((state, detail) => {
    console.log(`state: ${state}${detail === undefined ? "" : ` (${detail.category}: ${detail.message})`}`);
  });

  const deadline = Date.now() + GIVE_UP_MS;
  try {
    const received = new Set<string>();
    let onReceived: (id: string) => void = () => undefined;
    let following: () => void = () => undefined;
    const caughtUp = new Promise<void>((resolve) => (following = resolve));
    const room = client.join(roomName, {
      // Without afterSeq the room is followed live from its current head.
      onCaughtUp: (headSeq) => {
        console.log(`joined ${roomName} (head seq ${headSeq.toString()})`);
        following();
      },
      onMessage: (message) => {
        console.log(`received ${describe(message)}`);
        received.add(message.id);
        onReceived(message.id);
      },
    });
    await inTime(client.ready(), `connecting to ${baseUrl}`, deadline);
    // Send once the room is followed, so that the message comes back live.
    await inTime(caughtUp, `joining ${roomName}`, deadline);

    const sent = await inTime(room.send(`hello from ${user} at ${new Date().toISOString()}`), "sending", deadline);
    console.log(`sent ${describe(sent)} (client_msg_id ${sent.clientMsgId})`);
    // The stored message also arrives through the room, in seq order: maybe
    // before the acknowledgement, maybe after.
    const echoed = received.has(sent.id)
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          onReceived = (id) => {
            if (id === sent.id) resolve();
          };
        });

    await inTime(echoed, "receiving the own message back", deadline);
    console.log("done");
  } finally {
    stopWatching();
    client.close();
  }
}

try {
  await main();
} catch (error) {
  const detail = error instanceof ParleyClientError ? `${error.category}${error.field === undefined ? "" : ` (${error.field})`}: ${error.message}` : String(error);
  console.error(`client-node: ${detail}`);
  process.exitCode = 1;
}
