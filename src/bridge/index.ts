/**
 * The WebSocket bridge: browsers' connections in front of core. It holds no
 * state of its own and never imports core (the boundary lint enforces it).
 */
export { startBridge } from "./bridge-server.js";
