/** A benchmark setting from the environment: `fallback` when unset, an error naming it when out of range. */
export function numberFromEnv(name: string, fallback: number, min: number, max: number, options: { readonly integer?: boolean } = {}): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  const kind = options.integer === true ? "an integer" : "a number";
  const valid = options.integer === true ? Number.isInteger(value) : Number.isFinite(value);
  if (!valid || value < min || value > max) throw new Error(`${name} must be ${kind} from ${min} to ${max}, got "${raw}"`);
  return value;
}
