import { expect } from "vitest";
import { ConfigError, loadConfig } from "../../src/runtime/config.js";
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

/** The problems loadConfig names for `env` (failing the test if the configuration is valid). */
export function configProblems(env: Record<string, string>): readonly string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}
