/**
 * The core service: the only component that touches the database. It serves
 * ChatService and NotificationService over gRPC; `migrate` applies the
 * versioned migrations and the repeatable SQL definitions.
 */
export { startCore } from "./core-server.js";
export { migrate, openOrm } from "./store/orm.js";
export { redriveWebhooks } from "./notifications/webhook-dispatcher.js";
export { UnitOfWork } from "./store/unit-of-work.js";
