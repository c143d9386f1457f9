/**
 * The development mode of `parley serve` without DATABASE_URL: an embedded
 * PostgreSQL (PGlite), the demo page and its token endpoint. Only src/cli.ts
 * may import it (the boundary lint enforces it).
 */
export { developmentHttp, developmentSecret } from "./dev-mode.js";
export { startEmbeddedDatabase } from "./embedded-database.js";
export { assertDevelopmentModeAllowed } from "./development-guard.js";
