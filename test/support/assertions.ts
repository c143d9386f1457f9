import { expect } from "vitest";
import { ParleyError } from "../../src/wire/errors/parley-error.js";

/** The ParleyError a promise rejects with (failing the test if it resolves or rejects otherwise). */
export async function rejection(promise: Promise<unknown>): Promise<ParleyError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ParleyError);
  return error as ParleyError;
}
