import { describe, expect, it } from "vitest";
import { AbuseStrikes, MAX_AWAY_MS, STRIKE_MEMORY_MS } from "../../../src/bridge/admission/abuse-strikes.js";

describe("AbuseStrikes", () => {
  /** Strikes on a clock the test moves. */
  function onClock() {
    const clock = { now: 0 };
    return { clock, strikes: new AbuseStrikes(() => clock.now) };
  }

  it("tells a first offender the close's own reconnect_after, doubles it for each close not yet forgiven, and caps it", () => {
    const { clock, strikes } = onClock();
    expect(strikes.awayMs()).toBe(0);
    expect(strikes.strike(1_000)).toBe(1_000);
    expect(strikes.awayMs()).toBe(1_000);
    const seen = [];
    for (let i = 0; i < 8; i++) {
      clock.now += strikes.awayMs() + 900;
      expect(strikes.awayMs()).toBe(0);
      seen.push(strikes.strike(1_000));
    }
    expect(seen).toEqual([2_000, 4_000, 8_000, 16_000, 32_000, MAX_AWAY_MS, MAX_AWAY_MS, MAX_AWAY_MS]);
  });

  it("forgives one close per STRIKE_MEMORY_MS without another, and says how long the record must be kept", () => {
    const { clock, strikes } = onClock();
    strikes.strike(1_000);
    clock.now += 2_000;
    expect(strikes.strike(1_000)).toBe(2_000);
    // Two closes unforgiven: kept until both are.
    expect(strikes.keepMs()).toBe(2 * STRIKE_MEMORY_MS);
    clock.now += STRIKE_MEMORY_MS;
    // One forgiven: the next close counts as the second.
    expect(strikes.strike(1_000)).toBe(2_000);
    clock.now += 2 * STRIKE_MEMORY_MS;
    expect(strikes.keepMs()).toBe(0);
    expect(strikes.strike(1_000)).toBe(1_000);
  });

  it("never shortens a stay already announced", () => {
    const { clock, strikes } = onClock();
    strikes.strike(30_000);
    clock.now += 1_000;
    // A later close with a small reconnect_after still tells the rest of the first stay.
    expect(strikes.strike(1_000)).toBe(29_000);
  });
});
