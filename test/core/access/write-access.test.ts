// The write path's derivations of the decision table: the standings the
// store function lets send are exactly those decide() allows, and the
// implicit join rule is the one documented.
import { describe, expect, it } from "vitest";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { decide } from "../../../src/core/access/permissions.js";
import { joinsImplicitly, SEND_STANDINGS, standingCode } from "../../../src/core/access/write-access.js";

/** Every digit a code can hold: the enums' values and the unknown ones a newer writer or a bad row could leave. */
const DIGITS = Array.from({ length: 10 }, (_, digit) => digit);

describe("SEND_STANDINGS", () => {
  it("holds exactly the standings decide() lets send, over every kind, state and role a code can hold", () => {
    const allowed = new Set(SEND_STANDINGS);
    const mismatches: string[] = [];
    for (const kind of DIGITS) {
      for (const state of DIGITS) {
        for (const role of DIGITS) {
          // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- numbers no enum value has, on purpose: what a stored row could hold
          const decided = decide(kind, { state, role }, "send").allowed;
          if (allowed.has(standingCode(kind, state, role)) !== decided) mismatches.push(`${kind}/${state}/${role}: decide says ${decided}`);
        }
      }
    }
    expect(mismatches).toEqual([]);
    expect(SEND_STANDINGS).toHaveLength(new Set(SEND_STANDINGS).size);
  });

  it("is the joined members of role MEMBER and above, in every kind of room (the table's rule, spelled out)", () => {
    const expected = [RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT].flatMap((kind) =>
      [RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER].map((role) => standingCode(kind, MembershipState.JOINED, role)),
    );
    expect([...SEND_STANDINGS].sort()).toEqual(expected.sort());
  });

  it("gives every standing its own code", () => {
    const codes = new Set(DIGITS.flatMap((kind) => DIGITS.flatMap((state) => DIGITS.map((role) => standingCode(kind, state, role)))));
    expect(codes.size).toBe(1000);
  });
});

describe("joinsImplicitly", () => {
  const states = [undefined, MembershipState.INVITED, MembershipState.JOINED, MembershipState.LEFT, MembershipState.KICKED, MembershipState.BANNED];

  it("joins a public room's non-members who are not banned, and no one else", () => {
    const joined: string[] = [];
    for (const kind of [RoomKind.UNSPECIFIED, RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT]) {
      for (const state of states) {
        for (const role of [RoomRole.UNSPECIFIED, RoomRole.READ_ONLY, RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER]) {
          if (joinsImplicitly(kind, state === undefined ? undefined : { state, role })) joined.push(`${RoomKind[kind]}/${state === undefined ? "none" : MembershipState[state]}`);
        }
      }
    }
    expect([...new Set(joined)].sort()).toEqual(["PUBLIC/INVITED", "PUBLIC/KICKED", "PUBLIC/LEFT", "PUBLIC/none"]);
  });
});
