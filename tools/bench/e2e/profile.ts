/** Where a server process's time went: a V8 CPU profile (--cpu-prof) summed by library and by function. */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Files are shown relative to the repository. */
const REPO = fileURLToPath(new URL("../../..", import.meta.url));

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const NODE_CORE = "node core";

/** The group a function belongs to by where its code lives; NODE_CORE is re-attributed to its caller. */
function groupOf(url: string, name: string): string {
  if (name === "(idle)") return "idle";
  if (name === "(root)") return NODE_CORE;
  if (name === "(garbage collector)") return "V8 garbage collector";
  if (name === "(program)" || (url === "" && name.startsWith("("))) return "V8 native, unattributed (program)";
  if (url === "node:async_hooks" || url === "node:internal/async_hooks") return "async_hooks (OpenTelemetry context propagation)";
  if (url.includes("/node_modules/ws/")) return "ws";
  if (url.includes("/node_modules/@bufbuild/protobuf/") || url.includes("/gen/")) return "protobuf encode/decode";
  if (url.includes("/node_modules/@grpc/") || url.includes("/node_modules/@js-sdsl/")) return "grpc-js";
  if (/\/node_modules\/(pg|pg-[a-z-]+|postgres-[a-z-]+|@mikro-orm\/[a-z-]+|knex|kysely|tarn|dataloader)\//.test(url)) return "pg/MikroORM";
  if (url.includes("/node_modules/@opentelemetry/") || url.includes("/src/runtime/telemetry/")) return "OpenTelemetry";
  if (/\/node_modules\/(pino[a-z-]*|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|on-exit-leak-free)\//.test(url)) return "logging (pino)";
  if (url.includes("/node_modules/jose/")) return "auth (jose)";
  if (url.includes("/node_modules/")) return `other deps (${/\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? "?"})`;
  if (url.includes("/src/")) return "our code (src/)";
  return NODE_CORE;
}

export interface ProfileSummary {
  readonly file: string;
  readonly busyMs: number;
  readonly idleMs: number;
  readonly windowed: boolean;
  /** group → [self ms with the node-core work it called, of which node core]. */
  readonly groups: [string, { ms: number; nodeCoreMs: number }][];
  readonly top: { name: string; where: string; group: string; ms: number }[];
}

/**
 * Self time by group and by function, over the samples inside [from, to]
 * (hrtime ns: V8 stamps samples with the same monotonic clock). Time spent
 * in node core (sockets, streams, http2, buffers, timers) is charged to the
 * nearest caller that is not node core: a ws send's writev counts for ws.
 */
export async function summarizeProfile(directory: string, from: bigint, to: bigint): Promise<ProfileSummary> {
  const files = (await readdir(directory)).filter((name) => name.endsWith(".cpuprofile"));
  // tsx runs its loader on a worker thread, which writes a profile of its own: take the biggest (main thread).
  const sized = await Promise.all(files.map(async (name) => ({ name, size: (await stat(path.join(directory, name))).size })));
  const main = sized.sort((a, b) => b.size - a.size)[0];
  if (main === undefined) throw new Error(`no .cpuprofile in ${directory}`);
  const file = path.join(directory, main.name);
  const profile = JSON.parse(await readFile(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const owners = new Map<number, string>();
  const ownerOf = (id: number): string => {
    const known = owners.get(id);
    if (known !== undefined) return known;
    const frame = byId.get(id)?.callFrame;
    let owner = frame === undefined ? NODE_CORE : groupOf(frame.url, frame.functionName);
    if (owner === NODE_CORE) {
      const parent = parentOf.get(id);
      owner = parent === undefined ? NODE_CORE : ownerOf(parent);
    }
    owners.set(id, owner);
    return owner;
  };

  const fromUs = Number(from / 1000n);
  const toUs = Number(to / 1000n);
  const stamps: number[] = [];
  let at = profile.startTime;
  for (const delta of profile.timeDeltas) stamps.push((at += delta));
  // Fall back to the whole profile if the clocks do not line up.
  const windowed = stamps.some((stamp) => stamp >= fromUs && stamp <= toUs);
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, index) => {
    const stamp = stamps[index] ?? 0;
    if (windowed && (stamp < fromUs || stamp > toUs)) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index + 1] ?? 0));
  });

  const groups = new Map<string, { ms: number; nodeCoreMs: number }>();
  const functions = new Map<string, { name: string; where: string; group: string; ms: number }>();
  let busy = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) continue;
    const ms = us / 1000;
    const own = groupOf(frame.url, frame.functionName);
    if (own === "idle") {
      idle += ms;
      continue;
    }
    busy += ms;
    const owner = ownerOf(id);
    const group = own === NODE_CORE ? (owner === NODE_CORE ? "node core, no JS caller (event loop, I/O callbacks)" : owner) : own;
    const entry = groups.get(group) ?? { ms: 0, nodeCoreMs: 0 };
    entry.ms += ms;
    if (own === NODE_CORE) entry.nodeCoreMs += ms;
    groups.set(group, entry);
    const file = frame.url.replace(/^file:\/\//, "").replace(REPO, "").replace(/^.*\/node_modules\//, "");
    // Modules loaded through tsx report line 1 for everything: the file is what is known.
    const where = file === "" ? "(native)" : frame.lineNumber > 0 ? `${file}:${frame.lineNumber + 1}` : file;
    const label = own !== NODE_CORE ? own : owner === NODE_CORE ? "node core, no JS caller" : `node core, for ${owner}`;
    const key = `${frame.functionName}@${where}@${label}`;
    const fn = functions.get(key) ?? { name: frame.functionName === "" ? "(anonymous)" : frame.functionName, where, group: label, ms: 0 };
    fn.ms += ms;
    functions.set(key, fn);
  }
  return {
    file,
    busyMs: busy,
    idleMs: idle,
    windowed,
    groups: [...groups].sort((a, b) => b[1].ms - a[1].ms),
    top: [...functions.values()].sort((a, b) => b.ms - a.ms).slice(0, 20),
  };
}
