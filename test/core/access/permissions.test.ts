// The room decision table, exhaustively: every kind × actor standing ×
// action × target standing × new role is decided, each against an explicit
// expectation (actions on the room) or the rules the table promises (actions
// on a member), plus the stories a user would try.
import { describe, expect, it } from "vitest";
import { MembershipState, RoomKind, RoomRole } from "../../../gen/parley/v1/rooms_pb.js";
import { decide, type Decision, type Membership, ROOM_ACTIONS, type RoomAction } from "../../../src/core/access/permissions.js";

type Standing = "none" | "invited" | "left" | "kicked" | "banned" | "read_only" | "member" | "admin" | "owner";

const STANDINGS: Readonly<Record<Standing, Membership | undefined>> = {
  none: undefined,
  invited: { state: MembershipState.INVITED, role: RoomRole.UNSPECIFIED },
  left: { state: MembershipState.LEFT, role: RoomRole.MEMBER },
  kicked: { state: MembershipState.KICKED, role: RoomRole.MEMBER },
  banned: { state: MembershipState.BANNED, role: RoomRole.OWNER },
  read_only: { state: MembershipState.JOINED, role: RoomRole.READ_ONLY },
  member: { state: MembershipState.JOINED, role: RoomRole.MEMBER },
  admin: { state: MembershipState.JOINED, role: RoomRole.ADMIN },
  owner: { state: MembershipState.JOINED, role: RoomRole.OWNER },
};
const ALL = Object.keys(STANDINGS) as Standing[];
const JOINED: readonly Standing[] = ["read_only", "member", "admin", "owner"];
const KINDS = [RoomKind.PUBLIC, RoomKind.PRIVATE, RoomKind.DIRECT] as const;
const NEW_ROLES = [RoomRole.UNSPECIFIED, RoomRole.READ_ONLY, RoomRole.MEMBER, RoomRole.ADMIN, RoomRole.OWNER];
const RANK: Readonly<Record<Standing, number>> = { none: 0, invited: 0, left: 0, kicked: 0, banned: 0, read_only: 1, member: 2, admin: 3, owner: 4 };
const ROLE_RANK: Readonly<Record<RoomRole, number>> = { [RoomRole.UNSPECIFIED]: 0, [RoomRole.READ_ONLY]: 1, [RoomRole.MEMBER]: 2, [RoomRole.ADMIN]: 3, [RoomRole.OWNER]: 4 };

/** Actions on the room itself: who may, by kind. */
const ROOM_ACTION_TABLE: Readonly<Record<"read" | "send" | "mark_read" | "join" | "leave" | "update_room" | "change_kind", Readonly<Record<(typeof KINDS)[number], readonly Standing[]>>>> = {
  read: { [RoomKind.PUBLIC]: ["none", "invited", "left", "kicked", ...JOINED], [RoomKind.PRIVATE]: JOINED, [RoomKind.DIRECT]: JOINED },
  send: { [RoomKind.PUBLIC]: ["member", "admin", "owner"], [RoomKind.PRIVATE]: ["member", "admin", "owner"], [RoomKind.DIRECT]: ["member", "admin", "owner"] },
  mark_read: { [RoomKind.PUBLIC]: JOINED, [RoomKind.PRIVATE]: JOINED, [RoomKind.DIRECT]: JOINED },
  join: { [RoomKind.PUBLIC]: ["none", "invited", "left", "kicked", ...JOINED], [RoomKind.PRIVATE]: ["invited", ...JOINED], [RoomKind.DIRECT]: ["invited", "left", ...JOINED] },
  leave: { [RoomKind.PUBLIC]: ["invited", ...JOINED], [RoomKind.PRIVATE]: ["invited", ...JOINED], [RoomKind.DIRECT]: ["invited", ...JOINED] },
  update_room: { [RoomKind.PUBLIC]: ["admin", "owner"], [RoomKind.PRIVATE]: ["admin", "owner"], [RoomKind.DIRECT]: [] },
  change_kind: { [RoomKind.PUBLIC]: ["owner"], [RoomKind.PRIVATE]: ["owner"], [RoomKind.DIRECT]: [] },
};

const MEMBER_ACTIONS: readonly RoomAction[] = ["invite", "kick", "ban", "unban", "set_role"];

interface Case {
  readonly kind: RoomKind;
  readonly actor: Standing;
  readonly action: RoomAction;
  readonly target: Standing;
  readonly newRole: RoomRole;
  readonly decision: Decision;
}

/** Every combination, decided once. */
const CASES: readonly Case[] = [RoomKind.UNSPECIFIED, ...KINDS].flatMap((kind) =>
  ALL.flatMap((actor) =>
    ROOM_ACTIONS.flatMap((action) =>
      ALL.flatMap((target) =>
        NEW_ROLES.map((newRole) => ({ kind, actor, action, target, newRole, decision: decide(kind, STANDINGS[actor], action, { membership: STANDINGS[target], newRole, newKind: RoomKind.PRIVATE }) })),
      ),
    ),
  ),
);

const allowed = (c: Case) => c.decision.allowed;
const label = (c: Case) => `${RoomKind[c.kind]} ${c.actor} ${c.action} ${c.target} → ${RoomRole[c.newRole]}`;

describe("the room decision table", () => {
  it("decides every combination: 4 kinds × 9 standings × 12 actions × 9 targets × 5 roles, each refusal with a reason", () => {
    expect(CASES).toHaveLength(4 * 9 * ROOM_ACTIONS.length * 9 * 5);
    for (const c of CASES) if (!c.decision.allowed) expect(c.decision.reason, label(c)).not.toBe("");
  });

  it.each(Object.keys(ROOM_ACTION_TABLE) as (keyof typeof ROOM_ACTION_TABLE)[])("%s: exactly the standings of the table may, in each kind, whatever the target", (action) => {
    for (const kind of KINDS) {
      const expected = new Set(ROOM_ACTION_TABLE[action][kind]);
      for (const c of CASES.filter((x) => x.kind === kind && x.action === action)) {
        expect(allowed(c), label(c)).toBe(expected.has(c.actor));
      }
    }
  });

  it("a room without a kind and a banned actor are refused everything", () => {
    expect(CASES.filter((c) => (c.kind === RoomKind.UNSPECIFIED || c.actor === "banned") && allowed(c)).map(label)).toEqual([]);
  });

  it("a direct conversation has no invitations, kicks, bans, role changes or settings", () => {
    const managing = new Set<RoomAction>(["invite", "kick", "ban", "unban", "set_role", "update_room", "change_kind"]);
    expect(CASES.filter((c) => c.kind === RoomKind.DIRECT && managing.has(c.action) && allowed(c)).map(label)).toEqual([]);
  });

  it("who is not joined may only read a public room, join, and decline an invitation", () => {
    const outside = CASES.filter((c) => RANK[c.actor] === 0 && allowed(c));
    expect(outside.filter((c) => !(c.action === "read" || c.action === "join" || (c.action === "leave" && c.actor === "invited"))).map(label)).toEqual([]);
  });

  it("read-only members never send and never manage", () => {
    expect(CASES.filter((c) => c.actor === "read_only" && allowed(c) && !["read", "mark_read", "join", "leave"].includes(c.action)).map(label)).toEqual([]);
  });

  it("is monotonic in the actor's role: what a role may do, every higher role may do", () => {
    const key = (c: Case) => `${c.kind}|${c.action}|${c.target}|${c.newRole}`;
    const byKey = new Map<string, Map<Standing, boolean>>();
    for (const c of CASES.filter((x) => JOINED.includes(x.actor))) {
      const entry = byKey.get(key(c)) ?? new Map<Standing, boolean>();
      entry.set(c.actor, allowed(c));
      byKey.set(key(c), entry);
    }
    for (const [k, entry] of byKey) {
      for (let i = 0; i < JOINED.length; i++) {
        for (let j = i + 1; j < JOINED.length; j++) {
          const lower = JOINED[i] as Standing;
          const higher = JOINED[j] as Standing;
          if (entry.get(lower) === true) expect(entry.get(higher), `${k}: ${lower} may, ${higher} may not`).toBe(true);
        }
      }
    }
  });

  it("kicks and bans reach only members of a lower role; only admins and owners make them", () => {
    for (const c of CASES.filter((x) => (x.action === "kick" || x.action === "ban") && allowed(x))) {
      expect(RANK[c.actor], label(c)).toBeGreaterThanOrEqual(3);
      expect(RANK[c.target], label(c)).toBeLessThan(RANK[c.actor]);
    }
  });

  it("a kick needs someone joined or invited; a ban anyone not banned; an unban someone banned", () => {
    for (const c of CASES.filter(allowed)) {
      if (c.action === "kick") expect(["invited", ...JOINED], label(c)).toContain(c.target);
      if (c.action === "ban") expect(c.target, label(c)).not.toBe("banned");
      if (c.action === "unban") expect(c.target, label(c)).toBe("banned");
    }
  });

  it("roles: admins change lower members to roles below their own; owners change any member to any role; a role is required", () => {
    for (const c of CASES.filter((x) => x.action === "set_role" && allowed(x))) {
      expect(JOINED, label(c)).toContain(c.target);
      expect(c.newRole, label(c)).not.toBe(RoomRole.UNSPECIFIED);
      if (c.actor === "admin") {
        expect(RANK[c.target], label(c)).toBeLessThan(3);
        expect(ROLE_RANK[c.newRole], label(c)).toBeLessThan(3);
      } else {
        expect(c.actor, label(c)).toBe("owner");
      }
    }
    const ownerGrants = CASES.filter((x) => x.kind === RoomKind.PRIVATE && x.action === "set_role" && x.actor === "owner" && x.target === "owner" && x.newRole === RoomRole.MEMBER);
    expect(ownerGrants.map(allowed)).toEqual([true]);
  });

  it("invitations: members in public rooms, admins in private ones; never to a member or a banned user", () => {
    for (const c of CASES.filter((x) => x.action === "invite" && allowed(x))) {
      expect(RANK[c.actor], label(c)).toBeGreaterThanOrEqual(c.kind === RoomKind.PUBLIC ? 2 : 3);
      expect(["none", "invited", "left", "kicked"], label(c)).toContain(c.target);
    }
  });

  it("covers every action of a member's life with at least one allowed case", () => {
    for (const action of [...MEMBER_ACTIONS, ...(Object.keys(ROOM_ACTION_TABLE) as RoomAction[])]) {
      expect(CASES.some((c) => c.action === action && allowed(c)), action).toBe(true);
    }
  });
});

/* eslint-disable @typescript-eslint/no-unsafe-enum-assignment -- numbers no enum value has, on purpose: what a stored row or a newer writer could hold */
const UNKNOWN_KIND = 7 as RoomKind;
const UNKNOWN_STATE = 9 as MembershipState;
const UNKNOWN_ROLE = 99 as RoomRole;
/* eslint-enable @typescript-eslint/no-unsafe-enum-assignment */

describe("values outside the table", () => {
  const owner = STANDINGS.owner;
  it("an unknown kind, state, role or new role is refused, never compared", () => {
    expect(decide(UNKNOWN_KIND, owner, "send").allowed).toBe(false);
    expect(decide(RoomKind.PUBLIC, { state: UNKNOWN_STATE, role: RoomRole.OWNER }, "read").allowed).toBe(false);
    expect(decide(RoomKind.PUBLIC, { state: MembershipState.JOINED, role: UNKNOWN_ROLE }, "send").allowed).toBe(false);
    expect(decide(RoomKind.PUBLIC, STANDINGS.admin, "kick", { membership: { state: MembershipState.JOINED, role: UNKNOWN_ROLE } }).allowed).toBe(false);
    expect(decide(RoomKind.PUBLIC, STANDINGS.admin, "set_role", { membership: STANDINGS.member, newRole: UNKNOWN_ROLE }).allowed).toBe(false);
  });

  it("a room's kind changes between public and private only", () => {
    for (const kind of [RoomKind.PUBLIC, RoomKind.PRIVATE]) {
      expect(decide(kind, owner, "change_kind", { membership: undefined, newKind: RoomKind.PUBLIC }).allowed).toBe(true);
      expect(decide(kind, owner, "change_kind", { membership: undefined, newKind: RoomKind.PRIVATE }).allowed).toBe(true);
      expect(decide(kind, owner, "change_kind", { membership: undefined, newKind: RoomKind.DIRECT }).allowed).toBe(false);
      expect(decide(kind, owner, "change_kind", { membership: undefined }).allowed).toBe(false);
    }
    expect(decide(RoomKind.DIRECT, owner, "change_kind", { membership: undefined, newKind: RoomKind.PRIVATE }).allowed).toBe(false);
  });
});

describe("the stories a user tries", () => {
  const say = (kind: RoomKind, actor: Standing, action: RoomAction, target?: Standing, newRole?: RoomRole) =>
    decide(kind, STANDINGS[actor], action, target === undefined ? undefined : { membership: STANDINGS[target], newRole }).allowed;

  it("alice owns a private room and invites bob; carol cannot read it, join it or invite herself", () => {
    expect(say(RoomKind.PRIVATE, "owner", "invite", "none")).toBe(true);
    expect(say(RoomKind.PRIVATE, "none", "read")).toBe(false);
    expect(say(RoomKind.PRIVATE, "none", "join")).toBe(false);
    expect(say(RoomKind.PRIVATE, "none", "invite", "none")).toBe(false);
  });

  it("bob, invited, joins and sends; kicked, he can no longer read or send, nor join again without an invitation", () => {
    expect(say(RoomKind.PRIVATE, "invited", "join")).toBe(true);
    expect(say(RoomKind.PRIVATE, "member", "send")).toBe(true);
    expect(say(RoomKind.PRIVATE, "owner", "kick", "member")).toBe(true);
    expect(say(RoomKind.PRIVATE, "kicked", "read")).toBe(false);
    expect(say(RoomKind.PRIVATE, "kicked", "send")).toBe(false);
    expect(say(RoomKind.PRIVATE, "kicked", "join")).toBe(false);
  });

  it("an admin cannot kick, ban or demote the owner, nor make someone an admin", () => {
    expect(say(RoomKind.PUBLIC, "admin", "kick", "owner")).toBe(false);
    expect(say(RoomKind.PUBLIC, "admin", "ban", "owner")).toBe(false);
    expect(say(RoomKind.PUBLIC, "admin", "set_role", "owner", RoomRole.MEMBER)).toBe(false);
    expect(say(RoomKind.PUBLIC, "admin", "set_role", "member", RoomRole.ADMIN)).toBe(false);
    expect(say(RoomKind.PUBLIC, "admin", "set_role", "member", RoomRole.READ_ONLY)).toBe(true);
  });

  it("a banned user can do nothing in a public room until unbanned, and then may join again", () => {
    for (const action of ROOM_ACTIONS) expect(say(RoomKind.PUBLIC, "banned", action, "none", RoomRole.MEMBER), action).toBe(false);
    expect(say(RoomKind.PUBLIC, "admin", "unban", "banned")).toBe(true);
    expect(say(RoomKind.PUBLIC, "left", "join")).toBe(true);
  });

  it("a read-only member reads and keeps a read position, but does not send", () => {
    expect(say(RoomKind.PUBLIC, "read_only", "read")).toBe(true);
    expect(say(RoomKind.PUBLIC, "read_only", "mark_read")).toBe(true);
    expect(say(RoomKind.PUBLIC, "read_only", "send")).toBe(false);
  });
});
