/**
 * Every scenario's server processes are new, and the code an attack drives
 * (subscribe, replay reads, room lookups, at the bridge and in core) has
 * never run in them: its first use costs JIT compilation and first-query
 * set-up, hundreds of milliseconds on this machine, that a server in
 * production paid long ago. The warm-up runs those paths once, with a user
 * and rooms of its own, before the window opens — in every scenario, the
 * baseline's included — so that the bystanders' figures measure the attack,
 * not a cold start.
 */
import WebSocket from "ws";

/** Follows each of `rooms` (waiting for caught_up), unfollows it, `rounds` times over one connection. */
export async function warmUp(port: number, token: string, rooms: readonly string[], rounds = 3): Promise<void> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${encodeURIComponent(token)}`, { perMessageDeflate: false });
  const answers = new Map<string, () => void>();
  socket.on("message", (data: WebSocket.RawData) => {
    const text = Buffer.isBuffer(data) ? data.toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8");
    const requestId = (JSON.parse(text) as { requestId?: unknown }).requestId;
    if (typeof requestId === "string") answers.get(requestId)?.();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => { resolve(); });
    socket.once("error", reject);
  });
  const ask = (requestId: string, request: object) =>
    new Promise<void>((resolve) => {
      answers.set(requestId, resolve);
      socket.send(JSON.stringify({ requestId, ...request }));
    });
  try {
    for (let round = 0; round < rounds; round++) {
      await Promise.all(rooms.map((room) => ask(`w${round}-s-${room}`, { subscribe: { room } })));
      await Promise.all(rooms.map((room) => ask(`w${round}-u-${room}`, { unsubscribe: { room } })));
    }
  } finally {
    socket.close(1000);
  }
}
