// The run of frames in a row that the bridge itself refused: past
// max_consecutive_errors the client is broken and is closed (4508).
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import type { ParleyError } from "../../wire/index.js";

/**
 * Counts, in the order frames arrive, the VALIDATION refusals of the bridge's
 * own checks; any frame that passes them ends the run. Failures of forwarded
 * requests (core refusing a bad page size, say) are not counted: they were
 * not part of a run of garbage.
 */
export class ErrorRun {
  #count = 0;

  constructor(private readonly limit: number) {}

  /** Frames refused in a row so far. */
  get count(): number {
    return this.#count;
  }

  /** A frame passed the bridge's checks: the run is over. */
  accepted(): void {
    this.#count = 0;
  }

  /** A frame the bridge refused with `error`; true when the run has reached the limit. */
  refused(error: ParleyError): boolean {
    if (error.category !== ErrorCategory.VALIDATION) return false;
    this.#count++;
    return this.#count >= this.limit;
  }
}
