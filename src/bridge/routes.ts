import { ErrorCategory } from "../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../wire/index.js";

/**
 * What a route is for; the connection's behaviour follows from it: a chat
 * route follows its room from the start, a notifications route the user's
 * inbox, a session route nothing until asked (the client library's socket).
 */
type RouteKind = "chat" | "notifications" | "session";

export interface RouteDefinition {
  /** Literal segments and `{name}` parameters, e.g. `/ws/chat/{room}`. */
  readonly pattern: string;
  readonly kind: RouteKind;
  /** A check per parameter; a value that fails it is refused with 400. */
  readonly params?: Readonly<Record<string, RegExp>>;
}

export interface RouteMatch {
  readonly route: RouteDefinition;
  readonly params: Readonly<Record<string, string>>;
}

/** A route table that could not be compiled: start-up stops with this. */
export class RouteTableError extends Error {
  override readonly name = "RouteTableError";
  constructor(
    readonly pattern: string,
    reason: string,
  ) {
    super(`invalid WebSocket route "${pattern}": ${reason}`);
  }
}

type Segment = { readonly literal: string } | { readonly param: string };

interface CompiledRoute {
  readonly definition: RouteDefinition;
  readonly segments: readonly Segment[];
}

const LITERAL = /^[A-Za-z0-9._~-]+$/;
const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

/**
 * WebSocket routes are data: a table compiled and checked when the server
 * starts. A malformed pattern, a parameter without a check, or two routes
 * that would match the same paths stop start-up with an error naming the
 * pattern. At run time a path either matches one route (with validated
 * parameters) or is refused: unknown path → ROUTING (404), parameter that
 * fails its check → VALIDATION (400).
 */
export class RouteTable {
  readonly #routes: CompiledRoute[];

  constructor(definitions: readonly RouteDefinition[]) {
    this.#routes = [];
    const shapes = new Map<string, string>();
    for (const definition of definitions) {
      const segments = compile(definition);
      // Two routes collide when they have the same literals in the same places.
      const shape = segments.map((s) => ("literal" in s ? s.literal : "{}")).join("/");
      const existing = shapes.get(shape);
      if (existing !== undefined) throw new RouteTableError(definition.pattern, `matches the same paths as "${existing}"`);
      shapes.set(shape, definition.pattern);
      this.#routes.push({ definition, segments });
    }
  }

  /** The route for `pathname`, or a ParleyError (ROUTING or VALIDATION). */
  match(pathname: string): RouteMatch {
    const parts = pathname.split("/").slice(1);
    for (const { definition, segments } of this.#routes) {
      if (segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let matched = true;
      for (const [index, segment] of segments.entries()) {
        const part = parts[index] ?? "";
        if ("literal" in segment) {
          if (segment.literal !== part) matched = false;
        } else {
          params[segment.param] = part;
        }
        if (!matched) break;
      }
      if (!matched) continue;
      for (const [name, value] of Object.entries(params)) {
        let decoded: string;
        try {
          decoded = decodeURIComponent(value);
        } catch {
          throw new ParleyError(ErrorCategory.VALIDATION, `path parameter {${name}} is not valid percent-encoding`, { field: name });
        }
        if (!(definition.params?.[name]?.test(decoded) ?? false)) {
          throw new ParleyError(ErrorCategory.VALIDATION, `path parameter {${name}} is not valid: "${decoded.slice(0, 64)}"`, { field: name });
        }
        params[name] = decoded;
      }
      return { route: definition, params };
    }
    throw new ParleyError(ErrorCategory.ROUTING, `no WebSocket route for ${pathname.slice(0, 200)}`);
  }
}

function compile(definition: RouteDefinition): Segment[] {
  const { pattern } = definition;
  if (!pattern.startsWith("/")) throw new RouteTableError(pattern, "must start with /");
  if (pattern.length > 1 && pattern.endsWith("/")) throw new RouteTableError(pattern, "must not end with /");
  const seen = new Set<string>();
  const segments = pattern
    .split("/")
    .slice(1)
    .map((part, index): Segment => {
      const param = PARAM.exec(part);
      if (param?.[1] !== undefined) {
        const name = param[1];
        if (seen.has(name)) throw new RouteTableError(pattern, `parameter {${name}} appears twice`);
        if (definition.params?.[name] === undefined) throw new RouteTableError(pattern, `parameter {${name}} has no validation pattern`);
        seen.add(name);
        return { param: name };
      }
      if (!LITERAL.test(part)) {
        throw new RouteTableError(pattern, `segment ${index + 1} ("${part}") is neither a literal (letters, digits, . _ ~ -) nor a {parameter}`);
      }
      return { literal: part };
    });
  for (const name of Object.keys(definition.params ?? {})) {
    if (!seen.has(name)) throw new RouteTableError(pattern, `validation given for {${name}}, which the pattern does not have`);
  }
  return segments;
}
