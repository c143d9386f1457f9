import { randomUUID } from "node:crypto";
import type { ChatMessage } from "../../../gen/parley/v1/chat_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { classifyDatabaseError } from "../../errors/database.js";
import { ParleyError, validationError } from "../../errors/parley-error.js";
import type { UnitOfWork } from "../db/unit-of-work.js";
import type { MessageStore, NewMessage } from "./message-store.js";

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

export interface SendCommitterOptions {
  /** Most sends committed in one transaction (default 512). */
  readonly maxBatch?: number;
  /** Called with the messages of each commit, in seq order per room. */
  readonly onCommitted?: (messages: readonly ChatMessage[]) => void;
}

interface Pending {
  readonly command: SendCommand;
  readonly entry: NewMessage;
  readonly resolve: (result: SendResult) => void;
  readonly reject: (error: ParleyError) => void;
}

/**
 * Group commit: sends that arrive while a transaction is running are
 * committed together in the next one, so the per-transaction cost (~2 ms of
 * ORM and round trips) is shared. Batches commit one after another, in
 * arrival order, so a caller's sends keep their order in the room.
 *
 * Each send still gets its own answer: a batch that fails on one bad row is
 * split and retried in halves until the bad send stands alone and fails with
 * its own error; the others are stored normally.
 */
export class SendCommitter {
  readonly #queue: Pending[] = [];
  readonly #maxBatch: number;
  readonly #onCommitted: (messages: readonly ChatMessage[]) => void;
  #running: Promise<void> | undefined;

  constructor(
    private readonly unitOfWork: UnitOfWork,
    private readonly store: MessageStore,
    options: SendCommitterOptions = {},
  ) {
    this.#maxBatch = options.maxBatch ?? 512;
    this.#onCommitted = options.onCommitted ?? (() => undefined);
  }

  /** Stores one send; resolves with the stored (or original) message. */
  submit(command: SendCommand): Promise<SendResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ command, entry: { id: randomUUID(), ...command }, resolve, reject });
      this.#running ??= this.#drain().finally(() => {
        this.#running = undefined;
      });
    });
  }

  /** Resolves when everything submitted so far has been answered. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #drain(): Promise<void> {
    // Let the sends of the current tick join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      await this.#commit(batch);
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    const unique = collapseRepeats(batch);
    let outcomes;
    try {
      outcomes = await this.unitOfWork.transaction(
        {
          label: "chat.send-batch",
          context: batch.length === 1 ? contextOf(batch[0]?.command) : { batch_size: batch.length },
          retryIf: isIdempotencyRace,
        },
        (em) => this.store.storeBatch(em, unique.map((group) => group.first.entry)),
      );
    } catch (error) {
      await this.#recover(batch, ParleyError.from(error));
      return;
    }
    const committed: ChatMessage[] = [];
    unique.forEach((group, index) => {
      const outcome = outcomes[index];
      if (outcome === undefined) return;
      if (outcome.kind === "stored") committed.push(outcome.message);
      group.members.forEach((pending, position) => {
        const duplicate = outcome.kind === "duplicate" || position > 0;
        const conflict = duplicate ? contentConflict(pending.command, outcome.message) : undefined;
        if (conflict) pending.reject(conflict);
        else pending.resolve({ message: outcome.message, duplicate });
      });
    });
    if (committed.length > 0) this.#onCommitted(committed);
  }

  /**
   * A failed batch: failures that depend on the data (a constraint, a bad
   * value) are isolated by splitting; failures of the database itself
   * (unreachable, timed out) fail every send in the batch, retryable.
   */
  async #recover(batch: Pending[], error: ParleyError): Promise<void> {
    const dataDependent = error.category === ErrorCategory.PERSISTENCE || error.category === ErrorCategory.VALIDATION;
    if (batch.length === 1 || !dataDependent) {
      for (const pending of batch) pending.reject(error.withContext(contextOf(pending.command)));
      return;
    }
    const middle = Math.ceil(batch.length / 2);
    await this.#commit(batch.slice(0, middle));
    await this.#commit(batch.slice(middle));
  }
}

interface RepeatGroup {
  readonly first: Pending;
  /** Every send in the batch with the first's (sender, client_msg_id), first included. */
  readonly members: Pending[];
}

/** Sends in one batch that repeat an idempotency key are answered from the first. */
function collapseRepeats(batch: readonly Pending[]): RepeatGroup[] {
  const groups = new Map<string, RepeatGroup>();
  for (const pending of batch) {
    const key = `${pending.command.sender}\u0000${pending.command.clientMsgId}`;
    const group = groups.get(key);
    if (group) group.members.push(pending);
    else groups.set(key, { first: pending, members: [pending] });
  }
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

function contextOf(command: SendCommand | undefined): Record<string, string> {
  if (!command) return {};
  return { room: command.room, sender: command.sender, client_msg_id: command.clientMsgId };
}
