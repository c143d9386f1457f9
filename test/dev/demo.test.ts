import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { freePort } from "../support/free-port.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ChatService } from "../../gen/parley/v1/chat_pb.js";
import { ListDirection } from "../../gen/parley/v1/common_pb.js";
import { mintToken } from "../../src/runtime/auth/tokens.js";
import { createClient } from "../../src/runtime/grpc/client.js";
import { type ParleyProcess, spawnParley } from "../support/processes.js";

// The demo page (`parley serve` without DATABASE_URL) in a real browser:
// Debian's Chromium driven by playwright-core, against `parley serve` run as
// a child process on an embedded database in a temporary directory.

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** Upper bound of every wait on the page. */
const WAIT_MS = 10_000;
/** Upper bound for `parley serve` to be up (PGlite start, migrations, demo bundle). */
const START_MS = 45_000;
/** Upper bound for a page to be back after the server is: one reconnect delay (at most 10 s) and the resume. */
const RESUME_MS = 15_000;
/** Upper bound for `parley serve` to stop after SIGTERM. */
const STOP_MS = 10_000;
const SCREENSHOT = "test-results/demo.png";

/**
 * Why the browser tests cannot run here, or undefined when they can. Installs
 * Chromium (scripts/ensure-debian-package.sh) when it is missing and we are root;
 * only a machine where that is impossible skips, and never CI.
 */
async function chromiumUnavailable(): Promise<string | undefined> {
  if (existsSync(CHROMIUM)) return undefined;
  if (process.getuid?.() !== 0 && process.env.CI !== "true") {
    return `${CHROMIUM} is missing and only root can install it (run scripts/ensure-debian-package.sh /usr/bin/chromium chromium as root)`;
  }
  try {
    await promisify(execFile)("bash", ["scripts/ensure-debian-package.sh", CHROMIUM, "chromium", "the demo page test"], { timeout: 10 * 60_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(`Chromium is required for the browser tests and could not be installed:\n${stderr}`, { cause: error });
  }
  return undefined;
}

const unavailable = await chromiumUnavailable();
if (unavailable !== undefined) console.warn(`test/dev/demo.test.ts skipped: ${unavailable}`);


interface Row {
  /** null while the message is still pending (not acknowledged yet). */
  readonly seq: string | null;
  readonly sender: string;
  readonly body: string;
}

let dataDir = "";
let port: number;
let browser: Browser | undefined;
let server: { process: ParleyProcess; grpc: string } | undefined;
const processes: ParleyProcess[] = [];
const contexts: BrowserContext[] = [];
const pageErrors: string[] = [];
/** Every WebSocket frame each page received, as sent (JSON text frames). */
const received = new WeakMap<Page, string[]>();

async function startServer(): Promise<{ process: ParleyProcess; grpc: string }> {
  // Whatever the environment has, this is the embedded mode with its
  // development secret (empty values count as unset; DATABASE_URL is removed).
  const child = spawnParley("serve", {
    PARLEY_DATA_DIR: dataDir,
    PARLEY_HTTP_ADDR: `127.0.0.1:${port}`,
    PARLEY_GRPC_ADDR: "127.0.0.1:0",
    DATABASE_URL: undefined,
    PARLEY_CORE_ADDR: "",
    PARLEY_JWT_SECRET: "",
    PARLEY_WEBHOOK_URL: "",
    PARLEY_WEBHOOK_SECRET: "",
  });
  processes.push(child);
  const core = await child.waitFor((line) => line.msg === "core serving", START_MS);
  await child.waitFor((line) => line.msg === "bridge serving", START_MS);
  return { process: child, grpc: String(core.grpc) };
}

/** SIGTERM; SIGKILL when the process has not exited after `graceMs`. Resolves with whether it exited by itself. */
async function stopProcess(child: ParleyProcess, graceMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const graceful = await Promise.race([
    child.stop().then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => { resolve(false); }, graceMs))),
  ]);
  clearTimeout(timer);
  if (!graceful) await child.kill();
  return graceful;
}

function running(): { process: ParleyProcess; grpc: string } {
  if (server === undefined) throw new Error("parley serve is not running");
  return server;
}

/** A fresh browser context (own cookies, storage) with the demo page joined to `room` as `name`. */
async function openDemo(name: string, room: string): Promise<Page> {
  if (browser === undefined) throw new Error("no browser");
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  contexts.push(context);
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(`${name}: ${error.message}`));
  const frames: string[] = [];
  received.set(page, frames);
  page.on("websocket", (socket) => {
    socket.on("framereceived", ({ payload }) => frames.push(typeof payload === "string" ? payload : payload.toString("utf8")));
  });
  await page.goto(`http://127.0.0.1:${port}/`);
  await recordStates(page);
  await page.getByTestId("name").fill(name);
  await page.getByTestId("room").fill(room);
  try {
    await page.getByTestId("join").click();
    await waitForState(page, "connected");
  } catch (error) {
    const responsive = await Promise.race([page.evaluate(() => true), new Promise<false>((resolve) => setTimeout(() => { resolve(false); }, 2_000))]);
    const hint = responsive ? "" : " The page's main thread does not answer (a busy loop in the page's script?).";
    throw new Error(`${name} did not connect within ${WAIT_MS} ms.${hint}`, { cause: error });
  }
  return page;
}

/** Keeps every value the state badge takes (window.parleyStates), so short-lived states are seen too. */
async function recordStates(page: Page): Promise<void> {
  await page.evaluate(() => {
    const badge = document.querySelector('[data-testid="state"]');
    if (badge === null) throw new Error("no state badge");
    const states: string[] = [];
    (window as unknown as { parleyStates: string[] }).parleyStates = states;
    new MutationObserver((records) => {
      for (const record of records) {
        const value = (record.target as Element).getAttribute("data-state") ?? "";
        states.push(value);
      }
    }).observe(badge, { attributes: true, attributeFilter: ["data-state"] });
  });
}

/** The states the page went through since `from` (index into the record), repeats collapsed. */
async function statesSince(page: Page, from: number): Promise<string[]> {
  const all = await page.evaluate(() => (window as unknown as { parleyStates: string[] }).parleyStates);
  return all.slice(from).filter((state, index, list) => index === 0 || list[index - 1] !== state);
}

async function stateCount(page: Page): Promise<number> {
  return page.evaluate(() => (window as unknown as { parleyStates: string[] }).parleyStates.length);
}

async function waitForState(page: Page, state: string, timeout = WAIT_MS): Promise<void> {
  await page.locator(`[data-testid="state"][data-state="${state}"]`).waitFor({ timeout });
}

async function rows(page: Page): Promise<Row[]> {
  return page.$$eval('[data-testid="messages"] > li', (items) =>
    items.map((item) => ({
      seq: item.getAttribute("data-seq"),
      sender: item.querySelector(".sender")?.textContent ?? "",
      body: Array.from(item.childNodes)
        .filter((node) => node.nodeType === Node.TEXT_NODE)
        .map((node) => node.textContent)
        .join(""),
    })),
  );
}

/** Polls the page's message list until `done` holds; fails after WAIT_MS showing the list. */
async function waitForRows(page: Page, what: string, done: (list: Row[]) => boolean): Promise<Row[]> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const list = await rows(page);
    if (done(list)) return list;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${WAIT_MS} ms; the page shows ${JSON.stringify(list)}`);
    await page.waitForTimeout(50);
  }
}

/** Waits until the page shows at least `count` messages, all stored (none pending); callers then check the exact list. */
function waitForStored(page: Page, count: number, who: string): Promise<Row[]> {
  return waitForRows(page, `${who} shows ${count} stored messages`, (list) => list.length >= count && list.every((row) => row.seq !== null));
}

async function say(page: Page, text: string): Promise<void> {
  await page.getByTestId("body").fill(text);
  await page.getByTestId("send").click();
}

/** The room as stored in the database, read through core's gRPC API. */
async function storedRoom(room: string): Promise<Row[]> {
  const secret = readFileSync(join(dataDir, "dev-jwt-secret"), "utf8").trim();
  const token = await mintToken(secret, "demo-test-reader");
  const chat = createClient(ChatService, running().grpc, { headers: () => ({ authorization: `Bearer ${token}` }) });
  try {
    const page = await chat.listMessages({ room, direction: ListDirection.FORWARD, cursorSeq: 0n, pageSize: 500 }, { timeoutMs: WAIT_MS });
    return page.messages.map((message) => ({ seq: message.seq.toString(), sender: message.sender, body: message.body }));
  } finally {
    chat.close();
  }
}

function seqs(list: readonly Row[]): (string | null)[] {
  return list.map((row) => row.seq);
}

function oneTo(count: number): string[] {
  return Array.from({ length: count }, (_, i) => String(i + 1));
}

/**
 * Two pages chat; the server goes away (`how`) with one send in flight, more
 * are typed while it is down, a new `parley serve` starts on the same port
 * and data directory, and the conversation goes on. Every message must show
 * exactly once, in seq order, the same on both pages and in the database.
 */
async function restartMidConversation(room: string, how: "SIGTERM" | "SIGKILL"): Promise<void> {
  const alice = await openDemo("alice", room);
  const bob = await openDemo("bob", room);
  const sent: { sender: string; body: string }[] = [];
  const send = async (page: Page, sender: string, body: string) => {
    await say(page, body);
    sent.push({ sender, body });
  };

  for (let i = 1; i <= 4; i++) await send(i % 2 === 1 ? alice : bob, i % 2 === 1 ? "alice" : "bob", `before restart #${i}`);
  await waitForStored(alice, 4, "alice");
  await waitForStored(bob, 4, "bob");
  const marks = [await stateCount(alice), await stateCount(bob)] as const;

  // One send is still on its way when the server goes.
  await send(alice, "alice", "in flight at the stop");
  if (how === "SIGTERM") {
    const graceful = await stopProcess(running().process, STOP_MS);
    expect(graceful, `parley serve exits within ${STOP_MS} ms of SIGTERM`).toBe(true);
  } else {
    await running().process.kill();
  }
  server = undefined;
  await waitForState(alice, "reconnecting");
  await waitForState(bob, "reconnecting");
  // Typed while the server is down: pending on the page, sent on resume.
  await send(bob, "bob", "typed while down #1");
  await send(alice, "alice", "typed while down #2");
  await send(bob, "bob", "typed while down #3");

  server = await startServer();
  // The pages retry with backoff (full jitter, up to 10 s): allow one whole delay.
  await waitForState(alice, "resumed", RESUME_MS);
  await waitForState(bob, "resumed", RESUME_MS);
  for (let i = 1; i <= 4; i++) await send(i % 2 === 1 ? bob : alice, i % 2 === 1 ? "bob" : "alice", `after restart #${i}`);

  const total = sent.length;
  const onAlice = await waitForStored(alice, total, "alice");
  const onBob = await waitForStored(bob, total, "bob");
  expect(await statesSince(alice, marks[0])).toEqual(["reconnecting", "resumed"]);
  expect(await statesSince(bob, marks[1])).toEqual(["reconnecting", "resumed"]);

  // Nothing lost, nothing twice, one order: the pages agree with each other and with the database.
  expect(seqs(onAlice)).toEqual(oneTo(total));
  expect(onAlice.map((row) => row.body).sort()).toEqual(sent.map((message) => message.body).sort());
  expect(onBob).toEqual(onAlice);
  expect(await storedRoom(room)).toEqual(onAlice);
  // Each sender's messages are stored in the order they were typed.
  for (const sender of ["alice", "bob"]) {
    const typed = sent.filter((message) => message.sender === sender).map((message) => message.body);
    const stored = onAlice.filter((row) => row.sender === sender).map((row) => row.body);
    expect(stored, sender).toEqual(typed);
  }
  // A page opened now replays the same room from the restarted server's database.
  const carol = await openDemo("carol", room);
  expect(await waitForStored(carol, total, "carol")).toEqual(onAlice);
  expect(pageErrors).toEqual([]);
  // Going away and coming back is not a failure: no server logged an error.
  const errors = processes.flatMap((child) => child.lines).filter((line) => line.level === "error" || line.level === "fatal");
  expect(errors).toEqual([]);
}

/** One line of the open room's timeline: a message (`sender: body`), a membership or settings change, or a pending send. */
interface Line {
  readonly seq: string | null;
  readonly kind: "message" | "event" | "pending";
  readonly text: string;
}

async function timeline(page: Page): Promise<Line[]> {
  return page.$$eval('[data-testid="messages"] > li', (items) =>
    items.map((item) => {
      const own = Array.from(item.childNodes)
        .filter((node) => node.nodeType === Node.TEXT_NODE)
        .map((node) => node.textContent)
        .join("");
      const testid = item.getAttribute("data-testid");
      const sender = item.querySelector(".sender")?.textContent ?? "";
      return {
        seq: item.getAttribute("data-seq"),
        kind: testid === "message" ? ("message" as const) : testid === "event" ? ("event" as const) : ("pending" as const),
        text: testid === "message" ? `${sender}: ${own}` : own,
      };
    }),
  );
}

/** Polls the open room's timeline until `done` holds; fails after WAIT_MS showing it. */
async function waitForTimeline(page: Page, what: string, done: (lines: Line[]) => boolean): Promise<Line[]> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const lines = await timeline(page);
    if (done(lines)) return lines;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${WAIT_MS} ms; the page shows ${JSON.stringify(lines)}`);
    await page.waitForTimeout(50);
  }
}

function shows(text: string): (lines: Line[]) => boolean {
  return (lines) => lines.some((line) => line.text === text && line.seq !== null);
}

/** Waits until the page's open room is `room`. */
async function waitForOpen(page: Page, room: string): Promise<void> {
  await page.locator(`[data-testid="room-name"][data-room="${room}"]`).waitFor();
}

async function openedRoom(page: Page): Promise<string> {
  const room = await page.getByTestId("room-name").getAttribute("data-room");
  if (room === null) throw new Error("no room is open");
  return room;
}

function roomEntry(page: Page, room: string) {
  return page.getByRole("list", { name: "My rooms" }).locator(`li[data-room="${room}"]`);
}

async function listedRooms(page: Page): Promise<{ room: string; kind: string; state: string; title: string }[]> {
  return page.$$eval('[data-testid="room-list"] > li', (items) =>
    items.map((item) => ({
      room: item.getAttribute("data-room") ?? "",
      kind: item.getAttribute("data-kind") ?? "",
      state: item.getAttribute("data-state") ?? "",
      title: item.querySelector(".room-title")?.textContent ?? "",
    })),
  );
}

/** Clicks Refresh and waits until the page shows that refresh's answer. */
async function refreshRooms(page: Page): Promise<void> {
  const list = page.getByTestId("room-list");
  const before = Number((await list.getAttribute("data-refreshed")) ?? "0");
  await page.getByRole("button", { name: "Refresh" }).click();
  await page.waitForFunction((shown) => Number(document.querySelector('[data-testid="room-list"]')?.getAttribute("data-refreshed") ?? "0") > shown, before, { timeout: WAIT_MS });
}

async function waitForUnread(page: Page, room: string, count: number): Promise<void> {
  await roomEntry(page, room).locator(`[data-testid="room-unread"][data-count="${count}"]`).waitFor();
}

async function openByName(page: Page, room: string): Promise<void> {
  await page.getByLabel("Room to open").fill(room);
  await page.getByRole("button", { name: "Open", exact: true }).click();
  await waitForOpen(page, room);
}

/** The frames `page` received that carry an entry of `room`'s log, by seq. */
function logFramesOf(page: Page, room: string): { seq: bigint; raw: string }[] {
  const frames = received.get(page) ?? [];
  return frames.flatMap((raw) => {
    const frame = JSON.parse(raw) as { message?: { room?: string; seq?: string }; roomEvent?: { room?: string; seq?: string } };
    const entry = frame.message ?? frame.roomEvent;
    return entry?.room === room ? [{ seq: BigInt(entry.seq ?? "0"), raw }] : [];
  });
}

/** `room`'s whole log as stored, read through core's gRPC API with `user`'s token. */
async function storedLog(room: string, user: string): Promise<{ seq: string; message?: string }[]> {
  const secret = readFileSync(join(dataDir, "dev-jwt-secret"), "utf8").trim();
  const token = await mintToken(secret, user);
  const chat = createClient(ChatService, running().grpc, { headers: () => ({ authorization: `Bearer ${token}` }) });
  try {
    const page = await chat.listRoomEvents({ room, direction: ListDirection.FORWARD, cursorSeq: 0n, pageSize: 500 }, { timeoutMs: WAIT_MS });
    return page.events.map((event) => ({
      seq: event.seq.toString(),
      ...(event.event.case === "message" ? { message: `${event.event.value.sender}: ${event.event.value.body}` } : {}),
    }));
  } finally {
    chat.close();
  }
}

describe.skipIf(unavailable !== undefined)(`demo page in Chromium${unavailable === undefined ? "" : ` (skipped: ${unavailable})`}`, () => {
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "parley-demo-"));
    port = await freePort();
    // playwright-core's launch() runs on a fresh temporary user data dir and removes it on close.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 15_000 });
    server = await startServer();
  }, 90_000);

  // Each test's pages go with it: nothing a failed test left running weighs on the next.
  afterEach(async () => {
    for (const context of contexts.splice(0)) await context.close().catch(() => undefined);
  });

  afterAll(async () => {
    for (const context of contexts.splice(0)) await context.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await Promise.all(processes.map((child) => stopProcess(child, 5_000)));
    if (dataDir !== "") rmSync(dataDir, { recursive: true, force: true });
  }, 30_000);

  it("two pages chat in one room: each shows the other's messages, in the same order; a later page gets the history", async () => {
    const room = "lobby-a";
    const alice = await openDemo("alice", room);
    const bob = await openDemo("bob", room);
    const sent: { sender: string; body: string }[] = [];
    for (let i = 1; i <= 10; i++) {
      const [from, to, sender] = i % 2 === 1 ? [alice, bob, "alice"] : [bob, alice, "bob"];
      const body = `hi ${sender === "alice" ? "bob" : "alice"}, this is #${i}`;
      await say(from, body);
      sent.push({ sender, body });
      // The other page shows it: a conversation, not two monologues.
      await waitForRows(to, `message #${i} reaches the other page`, (list) => list.some((row) => row.body === body && row.seq !== null));
    }
    const onAlice = await waitForStored(alice, 10, "alice");
    const onBob = await waitForStored(bob, 10, "bob");
    expect(seqs(onAlice)).toEqual(oneTo(10));
    expect(onAlice.map(({ sender, body }) => ({ sender, body }))).toEqual(sent);
    expect(onBob).toEqual(onAlice);
    expect(await storedRoom(room)).toEqual(onAlice);

    const carol = await openDemo("carol", room);
    expect(await waitForStored(carol, 10, "carol")).toEqual(onAlice);
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it("notifications: notify-me makes the unread badge 1 with an item; mark-read brings it back to 0", async () => {
    const dora = await openDemo("dora", "notify-c");
    const badge = dora.getByTestId("unread");
    await badge.and(dora.locator('[data-count="0"]')).waitFor();
    await dora.getByTestId("notify-me").click();
    await badge.and(dora.locator('[data-count="1"]')).waitFor();
    const items = dora.getByTestId("notifications").locator("li");
    await items.first().waitFor();
    expect(await items.count()).toBe(1);
    expect(await items.first().getAttribute("class")).toBe("unread");
    expect(await items.first().textContent()).toMatch(/^Ping at /);

    await dora.getByTestId("mark-read").click();
    await badge.and(dora.locator('[data-count="0"]')).waitFor();
    expect(await badge.textContent()).toBe("0");
    await dora.getByTestId("notifications").locator("li.unread").waitFor({ state: "detached" });
    expect(pageErrors).toEqual([]);
  });

  it(`a screenshot of the demo page is written to ${SCREENSHOT}`, async () => {
    const erin = await openDemo("erin", "lobby-a");
    await waitForStored(erin, 10, "erin");
    await say(erin, "a picture for the record");
    await waitForStored(erin, 11, "erin");
    await erin.getByTestId("notify-me").click();
    await erin.getByTestId("unread").and(erin.locator('[data-count="1"]')).waitFor();
    mkdirSync("test-results", { recursive: true });
    rmSync(SCREENSHOT, { force: true });
    await erin.screenshot({ path: SCREENSHOT, timeout: WAIT_MS });
    const png = readFileSync(SCREENSHOT);
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
  });

  it("a private room: alice invites bob, carol can neither see nor read it; bob joins and chats, is kicked, and receives nothing after", async () => {
    const room = "team-secret";
    const hall = "hall-p";
    const alice = await openDemo("alice", hall);
    const bob = await openDemo("bob", hall);
    const carol = await openDemo("carol", hall);

    // alice creates the private room; it opens, and her list shows it with its kind.
    await alice.getByLabel("New room name", { exact: true }).fill(room);
    await alice.getByLabel("New room kind", { exact: true }).selectOption("private");
    await alice.getByRole("button", { name: "Create", exact: true }).click();
    await waitForOpen(alice, room);
    await roomEntry(alice, room).and(alice.locator('[data-kind="private"][data-state="joined"]')).waitFor();
    await waitForTimeline(alice, "alice sees the room's creation", shows("alice joined"));
    await alice.getByLabel("Invite user", { exact: true }).fill("bob");
    await alice.getByRole("button", { name: "Invite", exact: true }).click();
    await waitForTimeline(alice, "alice sees the invitation", shows("alice invited bob"));
    await alice.getByTestId("members").locator('li[data-user="bob"]', { hasText: "invited" }).waitFor();

    // carol: not in her list, and opening it by name is refused with nothing of it shown.
    await refreshRooms(carol);
    expect((await listedRooms(carol)).map((entry) => entry.room)).not.toContain(room);
    await openByName(carol, room);
    const refusal = carol.getByRole("alert");
    await refusal.waitFor();
    expect(await refusal.textContent()).toContain("no such room, or you may not see it");
    expect(await timeline(carol)).toEqual([]);
    expect(await carol.getByTestId("members").locator("li").count()).toBe(0);

    // bob sees the invitation, opens the room, joins it.
    await refreshRooms(bob);
    await roomEntry(bob, room).and(bob.locator('[data-state="invited"]')).waitFor();
    await roomEntry(bob, room).getByRole("button").click();
    await waitForOpen(bob, room);
    // Invited is not joined: he may not read it yet, and is told so.
    await bob.getByRole("alert").waitFor();
    expect(await timeline(bob)).toEqual([]);
    await bob.getByRole("button", { name: "Join", exact: true }).click();
    await waitForTimeline(bob, "bob sees his join", shows("bob joined"));
    await bob.getByRole("alert").waitFor({ state: "hidden" });
    await waitForTimeline(alice, "alice sees bob join", shows("bob joined"));
    await roomEntry(bob, room).and(bob.locator('[data-state="joined"]')).waitFor();

    // They chat both ways.
    await say(alice, "welcome bob");
    await waitForTimeline(bob, "bob gets alice's message", shows("alice: welcome bob"));
    await say(bob, "thanks alice");
    await waitForTimeline(alice, "alice gets bob's message", shows("bob: thanks alice"));

    // alice kicks bob: bob's page says so, and the kick is the last entry of the room he gets.
    await alice.getByRole("button", { name: "Kick bob", exact: true }).click();
    const onAlice = await waitForTimeline(alice, "alice sees the kick", shows("alice kicked bob"));
    const kickSeq = BigInt(onAlice.find((line) => line.text === "alice kicked bob")?.seq ?? "0");
    const notice = bob.getByRole("alert");
    await notice.waitFor();
    expect(await notice.textContent()).toMatch(/no longer receive this room.*kicked/);
    const onBob = await waitForTimeline(bob, "bob sees the kick", shows("alice kicked bob"));
    expect(onBob.at(-1)?.seq).toBe(kickSeq.toString());

    // What alice sends afterwards is stored (she sees it next in seq), and bob is not sent it.
    await say(alice, "after the kick");
    const afterKick = await waitForTimeline(alice, "alice's message after the kick is stored", shows("alice: after the kick"));
    expect(afterKick.at(-1)).toEqual({ seq: (kickSeq + 1n).toString(), kind: "message", text: "alice: after the kick" });

    // bob's other room still works, both ways; by the time this round trip is
    // over, a frame for the private room sent with alice's message would
    // have reached bob (the bridge fans one follow of it out to both).
    await openByName(bob, hall);
    await openByName(alice, hall);
    await say(alice, "bob, still here?");
    await waitForTimeline(bob, "bob gets alice's message in the other room", shows("alice: bob, still here?"));
    await say(bob, "yes, in the hall");
    await waitForTimeline(alice, "alice gets bob's answer in the other room", shows("bob: yes, in the hall"));

    const privateFrames = logFramesOf(bob, room);
    expect(privateFrames.length).toBeGreaterThan(0);
    expect(privateFrames.filter((frame) => frame.seq > kickSeq)).toEqual([]);
    expect((received.get(bob) ?? []).filter((raw) => raw.includes("after the kick"))).toEqual([]);
    // Carol was sent nothing of the room at all.
    expect(logFramesOf(carol, room)).toEqual([]);
    // bob's list drops the room once refreshed.
    await refreshRooms(bob);
    expect((await listedRooms(bob)).map((entry) => entry.room)).not.toContain(room);

    // alice's timeline is the room's log as stored: every seq once, in order.
    await openByName(alice, room);
    const shown = await waitForTimeline(alice, "alice's timeline of the private room", shows("alice: after the kick"));
    const stored = await storedLog(room, "alice");
    expect(shown.map((line) => line.seq)).toEqual(oneTo(stored.length));
    expect(shown.filter((line) => line.kind === "message").map((line) => line.text)).toEqual(stored.flatMap((entry) => (entry.message === undefined ? [] : [entry.message])));
    expect(shown.filter((line) => line.kind === "event").map((line) => line.text)).toEqual([
      'alice created the private room "team-secret"',
      "alice joined",
      "alice invited bob",
      "bob joined",
      "alice kicked bob",
    ]);
    expect(pageErrors).toEqual([]);
  }, 90_000);

  it("a direct message opened twice is one room; unread badges count messages in rooms not open and clear when opened", async () => {
    const hall = "hall-d";
    const frank = await openDemo("frank", hall);
    const grace = await openDemo("grace", hall);

    const openDirect = async () => {
      await frank.getByLabel("Direct message to", { exact: true }).fill("grace");
      await frank.getByRole("button", { name: "Message", exact: true }).click();
      await frank.locator('[data-testid="room-name"][data-room^="dm:"]').waitFor();
      return openedRoom(frank);
    };
    const dm = await openDirect();
    await roomEntry(frank, dm).locator(".room-title", { hasText: "@grace" }).waitFor();
    await openByName(frank, hall);
    expect(await openDirect()).toBe(dm);
    const direct = (await listedRooms(frank)).filter((entry) => entry.kind === "direct");
    expect(direct).toEqual([{ room: dm, kind: "direct", state: "joined", title: "@grace" }]);
    await refreshRooms(frank);
    expect((await listedRooms(frank)).filter((entry) => entry.kind === "direct")).toEqual(direct);

    // grace has the hall open; the conversation shows in her list with nothing unread.
    await refreshRooms(grace);
    await waitForUnread(grace, dm, 0);
    await roomEntry(grace, dm).locator(".room-title", { hasText: "@frank" }).waitFor();

    await say(frank, "one");
    await say(frank, "two");
    await waitForTimeline(frank, "frank's two messages are stored", (lines) => shows("frank: two")(lines) && shows("frank: one")(lines));
    await waitForUnread(grace, dm, 2);

    // Opening it shows them and clears the badge; a message while it is open leaves it clear.
    await roomEntry(grace, dm).getByRole("button").click();
    await waitForOpen(grace, dm);
    await waitForTimeline(grace, "grace reads the conversation", shows("frank: two"));
    await waitForUnread(grace, dm, 0);
    await say(frank, "three");
    await waitForTimeline(grace, "grace gets a message in the open room", shows("frank: three"));
    await waitForUnread(grace, dm, 0);

    // Back in the hall, the next one counts again.
    await openByName(grace, hall);
    await say(frank, "four");
    await waitForUnread(grace, dm, 1);

    // The read position was stored: a new page of grace's counts the same.
    const later = await openDemo("grace", hall);
    await waitForUnread(later, dm, 1);
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it("a public room is read by name before joining; Join puts it in the list with the member's role, Leave takes it out", async () => {
    const hall = "hall-j";
    const room = "open-plaza";
    const hana = await openDemo("hana", hall);
    const ivan = await openDemo("ivan", hall);
    await hana.getByLabel("New room name", { exact: true }).fill(room);
    await hana.getByLabel("New room kind", { exact: true }).selectOption("public");
    await hana.getByRole("button", { name: "Create", exact: true }).click();
    await waitForOpen(hana, room);
    await say(hana, "anyone may read this");
    await waitForTimeline(hana, "hana's message is stored", shows("hana: anyone may read this"));

    // Not a member, ivan reads it; the members are listed with their roles.
    await openByName(ivan, room);
    await waitForTimeline(ivan, "ivan reads the public room", shows("hana: anyone may read this"));
    await ivan.getByTestId("members").locator('li[data-user="hana"]', { hasText: "owner" }).waitFor();
    expect(await roomEntry(ivan, room).count()).toBe(0);
    await ivan.getByRole("button", { name: "Join", exact: true }).click();
    await waitForTimeline(hana, "hana sees ivan join", shows("ivan joined"));
    await ivan.getByTestId("members").locator('li[data-user="ivan"]', { hasText: "member" }).waitFor();
    await roomEntry(ivan, room).and(ivan.locator('[data-kind="public"][data-state="joined"]')).waitFor();

    await ivan.getByRole("button", { name: "Leave", exact: true }).click();
    await waitForTimeline(hana, "hana sees ivan leave", shows("ivan left"));
    await roomEntry(ivan, room).waitFor({ state: "detached" });
    // Leaving a public room ends no follow: ivan still reads it.
    await say(hana, "still public");
    await waitForTimeline(ivan, "ivan still reads the public room", shows("hana: still public"));
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it("the server restarts mid-conversation (SIGTERM): both pages go reconnecting → resumed, and every message arrives exactly once, in one order", async () => {
    await restartMidConversation("restart-b", "SIGTERM");
  }, 90_000);

  it("the server is killed mid-conversation (SIGKILL) and started again: the same, from what the embedded database kept", async () => {
    await restartMidConversation("restart-kill", "SIGKILL");
  }, 90_000);
});
