/**
 * One identity opening many concurrent ChatService.Subscribe streams on
 * core over one channel. A stream counts as accepted once its first event
 * (caught_up) arrives; refused when it fails before that; waiting when
 * neither happened by the deadline.
 */
import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import { ChatService } from "../../../gen/parley/v1/chat_pb.js";
import { createClient } from "../../../src/runtime/grpc/client.js";
import { ParleyError } from "../../../src/wire/errors/parley-error.js";
import { sleep } from "../../../src/wire/backoff.js";
import { percentile } from "../latency.js";
import type { AttackerLog } from "./attacker-log.js";
import { duration, fmt } from "./format.js";
import { Tally } from "./tally.js";
import type { AttackEnd, PlanOf } from "./ws-attacks.js";

/** Streams opened per turn of the event loop. */
const STREAMS_PER_TURN = 250;

export async function grpcStreams(plan: PlanOf<"grpc">, log: AttackerLog): Promise<AttackEnd> {
  const deadline = log.startedAt + plan.durationMs;
  const client = createClient(ChatService, plan.grpcAddress, { headers: () => ({ authorization: `Bearer ${plan.token}` }) });
  const controller = new AbortController();
  // One signal ends every stream at once: a listener per stream is expected.
  setMaxListeners(plan.streams + 10, controller.signal);
  let accepted = 0;
  const acceptedAfterMs: number[] = [];
  const refused = new Tally();
  /** Accepted streams that the server ended before the deadline. */
  const endedLater = new Tally();
  const describe = (error: unknown) => {
    const failure = ParleyError.from(error);
    return `${failure.categoryName}: ${failure.message.slice(0, 80)}`;
  };

  const follow = async () => {
    const startedAt = performance.now();
    let answered = false;
    try {
      for await (const _event of client.subscribe({ room: plan.room }, { signal: controller.signal })) {
        if (answered) continue;
        answered = true;
        accepted++;
        acceptedAfterMs.push(performance.now() - startedAt);
      }
      if (!controller.signal.aborted) (answered ? endedLater : refused).add("ended by the server without an error");
    } catch (error) {
      if (controller.signal.aborted) return;
      (answered ? endedLater : refused).add(describe(error));
    }
  };

  const follows: Promise<void>[] = [];
  for (let i = 0; i < plan.streams && performance.now() < deadline; i++) {
    log.attempts++;
    follows.push(follow());
    if (i % STREAMS_PER_TURN === STREAMS_PER_TURN - 1) await new Promise((resolve) => setImmediate(resolve));
  }
  const openedInMs = log.sinceStart();
  await sleep(Math.max(0, deadline - performance.now()));

  const waiting = log.attempts - accepted - refused.total;
  const open = accepted - endedLater.total;
  const answerTimes = Float64Array.from(acceptedAfterMs).sort();
  return {
    sockets: [
      {
        end: async () => {
          controller.abort();
          await Promise.race([Promise.allSettled(follows), sleep(5_000)]);
          client.close();
        },
      },
    ],
    summary: () =>
      [
        `${fmt(accepted)}/${fmt(log.attempts)} streams accepted`,
        `refused: ${refused.describe()}`,
        ...(waiting > 0 ? [`${fmt(waiting)} never answered`] : []),
        `${fmt(open)} still open at the end`,
      ].join("; "),
    notes: () => [
      `${fmt(log.attempts)} of ${fmt(plan.streams)} Subscribe streams opened in ${duration(openedInMs)} on one channel; caught_up after ${duration(percentile(answerTimes, 50))} (median), ${duration(answerTimes.at(-1) ?? Number.NaN)} at most`,
      `accepted streams ended by the server before the end: ${endedLater.describe()}`,
    ],
  };
}
