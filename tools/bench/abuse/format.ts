/** Numbers as the abuse bench prints them. */
export const fmt = (value: number, digits = 0): string =>
  Number.isFinite(value) ? value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–";

/** Milliseconds as "850 ms" or "2.5 s". */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  return ms < 1_000 ? `${fmt(ms)} ms` : `${fmt(ms / 1000, 1)} s`;
}
