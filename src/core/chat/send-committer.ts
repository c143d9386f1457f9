import type { SpanContext } from "@opentelemetry/api";
import type { ChatMessage } from "../../../gen/parley/v1/chat_pb.js";
import { parleyMetrics } from "../../runtime/index.js";
import { classifyDatabaseError } from "../store/database-errors.js";
import { type ParleyError, validationError } from "../../wire/index.js";
import { GroupCommitter, type ItemResult } from "../store/group-commit.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import { sendRefused } from "../access/write-access.js";
import type { MessageStore } from "./message-store.js";

/** A validated, authenticated send. */
export interface SendCommand {
  readonly room: string;
  readonly sender: string;
  readonly body: string;
  readonly clientMsgId: string;
}

export interface SendResult {
  readonly message: ChatMessage;
  /** True when (sender, client_msg_id) had been stored before. */
  readonly duplicate: boolean;
}

export type SendCommitter = GroupCommitter<SendCommand, SendResult>;

/** Chat sends through group commit; committed messages go to `onCommitted`. */
export function createSendCommitter(
  unitOfWork: UnitOfWork,
  store: MessageStore,
  options: { maxBatch?: number; onCommitted?: (messages: readonly ChatMessage[], origin: SpanContext) => void } = {},
): SendCommitter {
  return new GroupCommitter<SendCommand, SendResult>(unitOfWork, {
    label: "chat.send-batch",
    maxBatch: options.maxBatch,
    // storeBatch is one statement, and mapping its rows cannot fail after it.
    singleStatement: true,
    store: async (em, batch) => {
      const groups = collapseRepeats(batch);
      const outcomes = await store.storeBatch(
        em,
        groups.map((group) => group.first),
      );
      const results = new Array<ItemResult<SendResult>>(batch.length);
      groups.forEach((group, index) => {
        const outcome = outcomes[index];
        if (outcome === undefined) return;
        group.positions.forEach((position, nth) => {
          const command = batch[position];
          if (command === undefined) return;
          if (outcome.kind === "refused") {
            results[position] = { ok: false, error: sendRefused() };
            return;
          }
          const duplicate = outcome.kind === "duplicate" || nth > 0;
          const conflict = duplicate ? contentConflict(command, outcome.message) : undefined;
          results[position] = conflict ? { ok: false, error: conflict } : { ok: true, value: { message: outcome.message, duplicate } };
        });
      });
      return results;
    },
    committed: (results, origin) => {
      const fresh = results.filter((result) => !result.duplicate).map((result) => result.message);
      parleyMetrics().messagesStored.add(fresh.length);
      if (fresh.length > 0) options.onCommitted?.(fresh, origin);
    },
    retryIf: isIdempotencyRace,
    contextOf: (command) => ({ room: command.room, sender: command.sender, client_msg_id: command.clientMsgId }),
  });
}

interface RepeatGroup {
  readonly first: SendCommand & { readonly id: string };
  /** Batch positions of every send with the first's (sender, client_msg_id). */
  readonly positions: number[];
}

/** Sends in one batch that repeat an idempotency key are answered from the first. */
function collapseRepeats(batch: readonly SendCommand[]): RepeatGroup[] {
  const groups = new Map<string, RepeatGroup>();
  batch.forEach((command, position) => {
    const key = `${command.sender}\u0000${command.clientMsgId}`;
    const group = groups.get(key);
    if (group) group.positions.push(position);
    else groups.set(key, { first: { ...command, id: crypto.randomUUID() }, positions: [position] });
  });
  return [...groups.values()];
}

/**
 * A repeated client_msg_id must repeat the same message: reusing a key for
 * different content is a client bug, answered with VALIDATION rather than
 * silently returning a message the client did not send.
 */
function contentConflict(command: SendCommand, stored: ChatMessage): ParleyError | undefined {
  if (command.room === stored.room && command.body === stored.body) return undefined;
  return validationError("client_msg_id", `was already used for a different message (room "${stored.room}", seq ${stored.seq})`);
}

/** Another instance stored the same (sender, client_msg_id) concurrently. */
function isIdempotencyRace(error: unknown): boolean {
  const failure = classifyDatabaseError(error);
  return failure.code === "23505" && String((error as { message?: unknown }).message).includes("client_msg_id");
}
