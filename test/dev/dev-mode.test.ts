import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NotificationService } from "../../gen/parley/v1/notifications_pb.js";
import { createClient } from "../../src/runtime/grpc/client.js";
import { type ParleyProcess, spawnParley } from "../support/processes.js";
import { WsTestClient } from "../support/ws-client.js";

// The development mode as `npm start` runs it (`parley serve` without
// DATABASE_URL), attacked from outside: its /dev/* helpers by a DNS-rebound
// name and by another site's page, its WebSocket by another site's page, and
// its embedded database by another local user.

const START_MS = 45_000;

let dataDir = "";
let serve: ParleyProcess;
let http = "";
let grpc = "";

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "parley-dev-"));
  serve = spawnParley("serve", {
    PARLEY_DATA_DIR: join(dataDir, "data"),
    PARLEY_HTTP_ADDR: "127.0.0.1:0",
    PARLEY_GRPC_ADDR: "127.0.0.1:0",
    DATABASE_URL: undefined,
    PARLEY_CORE_ADDR: "",
    PARLEY_JWT_SECRET: "",
    PARLEY_ALLOWED_ORIGINS: "",
    PARLEY_WEBHOOK_URL: "",
    PARLEY_WEBHOOK_SECRET: "",
  });
  grpc = String((await serve.waitFor((line) => line.msg === "core serving", START_MS)).grpc);
  http = String((await serve.waitFor((line) => line.msg === "bridge serving", START_MS)).http);
}, START_MS + 5_000);

afterAll(async () => {
  await serve.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly text: string;
}

/** A raw HTTP POST to the development server, with whatever Host and Origin an attacker's browser would send. */
function post(path: string, body: unknown, headers: { host?: string; origin?: string } = {}): Promise<Answer> {
  const port = Number(http.slice(http.lastIndexOf(":") + 1));
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        headers: {
          host: headers.host ?? http,
          ...(headers.origin === undefined ? {} : { origin: headers.origin }),
          "content-type": "application/json",
          "content-length": Buffer.byteLength(text),
        },
      },
      (response) => {
        let answer = "";
        response.on("data", (chunk: Buffer) => (answer += chunk.toString()));
        response.on("end", () => {
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(answer) as Record<string, unknown>, text: answer });
        });
      },
    );
    outgoing.on("error", reject);
    outgoing.end(text);
  });
}

async function inboxOf(user: string): Promise<string[]> {
  const minted = await post("/dev/token", { user });
  const client = createClient(NotificationService, grpc, { headers: () => ({ authorization: `Bearer ${String(minted.body.token)}` }) });
  try {
    return (await client.listNotifications({})).notifications.map((notification) => notification.title);
  } finally {
    client.close();
  }
}

describe("the development endpoints (/dev/token, /dev/notify)", () => {
  const port = () => http.slice(http.lastIndexOf(":") + 1);

  it("refuse a Host that is not a loopback name (DNS rebinding) with 403 PERMISSION_DENIED: no token minted, no notification written", async () => {
    for (const host of [`rebound.example:${port()}`, `192.168.1.20:${port()}`, `localhost.rebound.example:${port()}`, "bad host"]) {
      const token = await post("/dev/token", { user: "rebound-victim" }, { host, origin: `http://${host}` });
      expect(token.status, host).toBe(403);
      expect(token.body, host).toMatchObject({ category: "PERMISSION_DENIED", message: expect.stringMatching(/only requests addressed to localhost/) as unknown });
      expect(token.text).not.toMatch(/token"/);
      const notify = await post("/dev/notify", { user: "rebound-victim", title: "rebound" }, { host });
      expect(notify.status, host).toBe(403);
    }
    expect(await inboxOf("rebound-victim")).toEqual([]);
    expect(serve.lines.some((line) => line.category === "PERMISSION_DENIED" && line.path === "/dev/token")).toBe(true);
  });

  it("refuse a page of another origin (CSRF) with 403 PERMISSION_DENIED: no token minted, no notification written", async () => {
    for (const origin of ["https://evil.example", `http://rebound.example:${port()}`, "null", `http://127.0.0.1:${Number(port()) + 1}`]) {
      const token = await post("/dev/token", { user: "csrf-victim" }, { origin });
      expect(token.status, origin).toBe(403);
      expect(token.body, origin).toMatchObject({ category: "PERMISSION_DENIED", message: expect.stringMatching(/only the demo page served here/) as unknown });
      const notify = await post("/dev/notify", { user: "csrf-victim", title: "forged" }, { origin });
      expect(notify.status, origin).toBe(403);
    }
    expect(await inboxOf("csrf-victim")).toEqual([]);
  });

  it("answer the demo page and local programs under every loopback name", async () => {
    for (const name of ["127.0.0.1", "localhost", "[::1]"]) {
      const host = `${name}:${port()}`;
      const fromPage = await post("/dev/token", { user: "demo-user" }, { host, origin: `http://${host}` });
      expect(fromPage.status, host).toBe(200);
      expect(fromPage.body.token, host).toEqual(expect.any(String));
    }
    expect((await post("/dev/token", { user: "demo-user" })).status).toBe(200);
    expect((await post("/dev/notify", { user: "demo-user", title: "from the page" }, { origin: `http://${http}` })).status).toBe(200);
    expect(await inboxOf("demo-user")).toEqual(["from the page"]);
  });
});

describe("the development mode's WebSocket", () => {
  it("refuses another site's page with 403 and accepts the demo page's own origin", async () => {
    const token = String((await post("/dev/token", { user: "ws-user" })).body.token);
    const refusal = await WsTestClient.refusal(`http://${http}`, "/ws/chat/dev-lobby", { token, origin: "https://evil.example" });
    expect(refusal).toMatchObject({ status: 403, body: { category: "PERMISSION_DENIED" } });
    const own = await WsTestClient.connect(`http://${http}`, "/ws/chat/dev-lobby", { token, origin: `http://${http}` });
    await own.waitFor((frame) => frame.kind.case === "welcome", { what: "welcome" });
    own.socket.close();
  });
});

describe("the embedded database", () => {
  it("listens on no TCP port: the process's only listening TCP sockets are the bridge's and core's", () => {
    const ports = listeningTcpPorts(serve.child.pid ?? 0);
    expect(ports.sort()).toEqual([Number(http.split(":").pop()), Number(grpc.split(":").pop())].sort());
  });

  it("is served on a unix socket in a directory only its owner may enter", () => {
    const run = join(dataDir, "data", "run");
    const stat = statSync(run);
    expect(stat.mode & 0o777).toBe(0o700);
    expect(stat.uid).toBe(process.getuid?.());
    expect(readdirSync(run)).toContain(".s.PGSQL.5432");
  });

  it.runIf(process.getuid?.() === 0)("another local user cannot connect to it, where its owner can", async () => {
    const socket = join(dataDir, "data", "run", ".s.PGSQL.5432");
    // Everything but the run directory open to everyone, as a data directory
    // made by hand and a umask of 0 would leave it: the run directory alone keeps others out.
    chmodSync(dataDir, 0o755);
    chmodSync(join(dataDir, "data"), 0o755);
    chmodSync(socket, 0o777);
    expect(await probe(socket, 65534)).toBe("EACCES");
    expect(await probe(socket, process.getuid?.() ?? 0)).toBe("connected");
  });
});

/** Tries to connect to `socket` from a child process running as `uid`: "connected" or the error code. */
function probe(socket: string, uid: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["-e", `require("node:net").connect(${JSON.stringify(socket)}).on("connect", () => { console.log("connected"); process.exit(0); }).on("error", (e) => { console.log(e.code); process.exit(0); })`],
      { uid, gid: uid, stdio: ["ignore", "pipe", "inherit"], cwd: "/" },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.on("exit", () => { resolve(out.trim()); });
  });
}

/**
 * The TCP ports `pid` listens on, from /proc: its socket inodes, matched
 * against the kernel's tables of TCP sockets in the LISTEN state.
 */
function listeningTcpPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match?.[1] !== undefined) inodes.add(match[1]);
    } catch {
      // The descriptor closed meanwhile.
    }
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [, local, , state, , , , , , inode] = fields;
      if (state === "0A" && inode !== undefined && inodes.has(inode) && local !== undefined) ports.add(parseInt(local.split(":")[1] ?? "", 16));
    }
  }
  return [...ports];
}
