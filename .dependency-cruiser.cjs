// Import boundaries of src/, checked by `npm run lint:boundaries` (part of
// `npm test`). Folders are runtime boundaries: wire/ is what both ends of a
// wire agree on, runtime/ is Node plumbing with no chat knowledge, core/ owns
// all state, bridge/ is an untrusted relay in front of core, client/ runs in
// browsers. Each rule's name is what a violation prints.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "An import cycle makes load order matter and modules inseparable: cut the cycle.",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "bridge-not-core",
      severity: "error",
      comment: "The bridge talks to core over gRPC only; shared rules live in src/wire/, plumbing in src/runtime/.",
      from: { path: "^src/bridge/" },
      to: { path: "^src/core/" },
    },
    {
      name: "core-not-bridge",
      severity: "error",
      comment: "Core serves every kind of caller; it knows nothing of WebSocket connections.",
      from: { path: "^src/core/" },
      to: { path: "^src/bridge/" },
    },
    {
      name: "client-only-wire-and-gen",
      severity: "error",
      comment: "The client library runs in browsers: it may import src/wire/, gen/ and @bufbuild/protobuf only.",
      from: { path: "^src/client/" },
      to: { pathNot: ["^src/client/", "^src/wire/", "^gen/", "(^|/)node_modules/@bufbuild/protobuf/"] },
    },
    {
      name: "wire-only-gen-and-protobuf",
      severity: "error",
      comment: "src/wire/ is shared by both ends of every wire (browsers included): gen/ and @bufbuild/protobuf only.",
      from: { path: "^src/wire/" },
      to: { pathNot: ["^src/wire/", "^gen/", "(^|/)node_modules/@bufbuild/protobuf/"] },
    },
    {
      name: "runtime-no-product",
      severity: "error",
      comment: "src/runtime/ is infrastructure with no chat knowledge: it may not import core, bridge, client or dev.",
      from: { path: "^src/runtime/" },
      to: { path: "^src/(core|bridge|client|dev)/" },
    },
    {
      name: "dev-only-from-cli",
      severity: "error",
      comment: "Development conveniences (embedded database, demo, dev tokens) are reachable only through src/cli.ts.",
      from: { path: "^src/", pathNot: ["^src/dev/", "^src/cli\\.ts$"] },
      to: { path: "^src/dev/" },
    },
    {
      name: "src-not-tests-or-tools",
      severity: "error",
      comment: "Product code never depends on tests, harnesses or benchmarks.",
      from: { path: "^src/" },
      to: { path: "^(test|tools)/" },
    },
    {
      name: "gen-is-leaf",
      severity: "error",
      comment: "Generated code depends on nothing of ours.",
      from: { path: "^gen/" },
      to: { path: "^(src|test|tools)/" },
    },
    {
      name: "public-surface-only",
      severity: "error",
      comment: "Another top folder is used through its index.ts, its public surface; add the export there if it is missing.",
      from: { path: "^src/([^/]+)/" },
      to: { path: "^src/[^/]+/", pathNot: ["^src/$1/", "^src/[^/]+/index\\.ts$"] },
    },
    {
      name: "cli-uses-public-surfaces",
      severity: "error",
      comment: "src/cli.ts wires the folders together through their index.ts files.",
      from: { path: "^src/cli\\.ts$" },
      to: { path: "^src/[^/]+/", pathNot: "^src/[^/]+/index\\.ts$" },
    },
    {
      name: "no-own-index",
      severity: "error",
      comment: "Inside a folder, import the module itself: the folder's own index.ts re-exports it and would make a cycle.",
      from: { path: "^src/([^/]+)/", pathNot: "^src/[^/]+/index\\.ts$" },
      to: { path: "^src/$1/index\\.ts$" },
    },
    {
      name: "not-to-unresolvable",
      severity: "error",
      comment: "An import that resolves to nothing.",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
