// The bridge's read rule (src/wire/room-read.ts) is a copy of one row of
// core's decision table: the bridge may not import core, and it must decide
// per connection who receives a room's events. This test is what keeps the
// copy true: for every kind × state × role, numbers outside the enums
// included, mayReadRoom must say what decide(kind, membership, "read") says.
import { describe, expect, it } from "vitest";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { decide, type Membership } from "../../../src/core/access/permissions.js";
import { mayReadRoom } from "../../../src/wire/room-read.js";

/** Every value of an enum, and one number it does not define. */
function valuesOf(enumObject: Record<string, string | number>): number[] {
  const defined = Object.values(enumObject).filter((value): value is number => typeof value === "number");
  return [...defined, Math.max(...defined) + 1];
}

const KINDS = valuesOf(RoomKind) as unknown as RoomKind[];
const STATES = valuesOf(MembershipState) as unknown as MembershipState[];
const ROLES = valuesOf(RoomRole) as unknown as RoomRole[];

/** An enum value's name, or its number when the enum does not define it. */
function nameOf(enumObject: Record<number, string | undefined>, value: number): string {
  return enumObject[value] ?? String(value);
}

/**
 * The wire carries "no record" as state UNSPECIFIED (GetRoom's my_state);
 * decide() is given no membership at all for it.
 */
function membershipOf(state: MembershipState, role: RoomRole): Membership | undefined {
  return state === MembershipState.UNSPECIFIED ? undefined : { state, role };
}

describe("the bridge's read rule", () => {
  it(`equals decide(kind, membership, "read") for all ${KINDS.length} kinds × ${STATES.length} states × ${ROLES.length} roles`, () => {
    const disagreements: string[] = [];
    for (const kind of KINDS) {
      for (const state of STATES) {
        for (const role of ROLES) {
          const core = decide(kind, membershipOf(state, role), "read").allowed;
          // "No record" has no role: decide() never sees one for it.
          const bridge = mayReadRoom(kind, { state, role: state === MembershipState.UNSPECIFIED ? RoomRole.UNSPECIFIED : role });
          if (core !== bridge) disagreements.push(`${nameOf(RoomKind, kind)} ${nameOf(MembershipState, state)} ${nameOf(RoomRole, role)}: core ${core}, bridge ${bridge}`);
        }
      }
    }
    expect(disagreements).toEqual([]);
  });

  it("reads as documented: public rooms by anyone not banned, private and direct rooms by joined members", () => {
    const none = { state: MembershipState.UNSPECIFIED, role: RoomRole.UNSPECIFIED };
    const joined = { state: MembershipState.JOINED, role: RoomRole.READ_ONLY };
    const left = { state: MembershipState.LEFT, role: RoomRole.UNSPECIFIED };
    const banned = { state: MembershipState.BANNED, role: RoomRole.UNSPECIFIED };
    expect([none, joined, left, banned].map((s) => mayReadRoom(RoomKind.PUBLIC, s))).toEqual([true, true, true, false]);
    expect([none, joined, left, banned].map((s) => mayReadRoom(RoomKind.PRIVATE, s))).toEqual([false, true, false, false]);
    expect([none, joined, left, banned].map((s) => mayReadRoom(RoomKind.DIRECT, s))).toEqual([false, true, false, false]);
    expect(mayReadRoom(RoomKind.UNSPECIFIED, joined)).toBe(false);
  });
});
