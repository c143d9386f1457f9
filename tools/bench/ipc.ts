/** Messages between tools/bench/core.ts (the parent) and tools/bench/servers.ts (the server child). */

/** Parent → child. */
export type ParentMessage =
  /** Report the child's process.cpuUsage(), echoing `id`. */
  | { readonly type: "cpu"; readonly id: number }
  /** Stop serving and exit. */
  | { readonly type: "stop" };

/** Child → parent. */
export type ChildMessage =
  | { readonly type: "ready"; readonly address: string }
  | { readonly type: "cpu"; readonly id: number; readonly usage: NodeJS.CpuUsage }
  | { readonly type: "failed"; readonly message: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

export function isParentMessage(value: unknown): value is ParentMessage {
  if (!isRecord(value)) return false;
  return (value.type === "cpu" && typeof value.id === "number") || value.type === "stop";
}

export function isChildMessage(value: unknown): value is ChildMessage {
  if (!isRecord(value)) return false;
  switch (value.type) {
    case "ready":
      return typeof value.address === "string";
    case "cpu":
      return typeof value.id === "number" && isRecord(value.usage);
    case "failed":
      return typeof value.message === "string";
    default:
      return false;
  }
}
