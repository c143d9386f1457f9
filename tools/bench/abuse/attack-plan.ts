/**
 * What the abuse bench's attacker process is told to do, and what it answers,
 * over its IPC channel (tools/bench/abuse/attacker.ts is the child).
 */
import { z } from "zod";

const target = {
  /** The bridge's HTTP/WebSocket port on 127.0.0.1. */
  bridgePort: z.number().int().positive(),
  /** Core's gRPC address (host:port). */
  grpcAddress: z.string(),
  /** The attacker's token (one user for every connection). */
  token: z.string(),
  /** How long the attack lasts from "start", in ms. */
  durationMs: z.number().int().positive(),
};

const attackPlanSchema = z.discriminatedUnion("kind", [
  /** One connection cycling `subscribe` over `rooms`, then `unsubscribe` over them, at a fixed frame rate. */
  z.object({ kind: z.literal("churn"), ...target, rooms: z.array(z.string()).min(1), framesPerSecond: z.number().positive() }),
  /** `connections` connections of one user, each sending `send` frames to `room` at a fixed rate. */
  z.object({ kind: z.literal("senders"), ...target, room: z.string(), connections: z.number().int().positive(), framesPerSecond: z.number().positive() }),
  /** One connection writing frames as fast as its socket takes them. */
  z.object({ kind: z.literal("flood"), ...target, room: z.string(), frame: z.enum(["send", "ping"]) }),
  /** `connections` connections of one user that do nothing. */
  z.object({ kind: z.literal("idle"), ...target, connections: z.number().int().positive(), concurrency: z.number().int().positive() }),
  /** `connections` upgrade requests whose headers never end. */
  z.object({ kind: z.literal("slowloris"), ...target, connections: z.number().int().positive(), concurrency: z.number().int().positive(), trickleMs: z.number().int().positive() }),
  /** `streams` concurrent ChatService.Subscribe streams on core, one identity, one channel. */
  z.object({ kind: z.literal("grpc"), ...target, room: z.string(), streams: z.number().int().positive() }),
]);

export type AttackPlan = z.infer<typeof attackPlanSchema>;

/** What happened to the attacker: one line for the table, more lines beneath it. */
export interface AttackReport {
  readonly summary: string;
  readonly details: readonly string[];
}

const parentMessageSchema = z.discriminatedUnion("type", [z.object({ type: z.literal("start"), plan: attackPlanSchema }), z.object({ type: z.literal("stop") })]);
export type AttackerParentMessage = z.infer<typeof parentMessageSchema>;

const childMessageSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("ready") }),
  z.object({ type: z.literal("report"), summary: z.string(), details: z.array(z.string()) }),
  z.object({ type: z.literal("failed"), message: z.string() }),
]);
export type AttackerChildMessage = z.infer<typeof childMessageSchema>;

export function parseParentMessage(value: unknown): AttackerParentMessage | undefined {
  const parsed = parentMessageSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

export function parseChildMessage(value: unknown): AttackerChildMessage | undefined {
  const parsed = childMessageSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}
