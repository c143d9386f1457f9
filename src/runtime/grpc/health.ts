import { create } from "@bufbuild/protobuf";
import { status as Status } from "@grpc/grpc-js";
import {
  Health,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
} from "../../../gen/grpc/health/v1/health_pb.js";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import type { ServiceHandlers } from "./server.js";
import { ProtocolStatusError } from "./status.js";

export { ServingStatus };

/**
 * The standard grpc.health.v1.Health service. The empty service name is the
 * whole server; each parley service is listed by its full name.
 */
export class HealthRegistry {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watchers = new Set<(service: string) => void>();

  setStatus(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    for (const notify of this.#watchers) notify(service);
  }

  /** Marks every registered service NOT_SERVING, e.g. at shutdown. */
  shutdown(): void {
    for (const service of this.#statuses.keys()) this.setStatus(service, ServingStatus.NOT_SERVING);
  }

  handlers(): ServiceHandlers<typeof Health> {
    return {
      check: (request) => {
        const status = this.#statuses.get(request.service);
        if (status === undefined) {
          // health.proto: "If the requested service is unknown, the call will fail with status NOT_FOUND."
          return Promise.reject(new ProtocolStatusError(Status.NOT_FOUND, ErrorCategory.ROUTING, `unknown service "${request.service.slice(0, 200)}"`));
        }
        return Promise.resolve(response(status));
      },
      list: () => {
        const statuses: Record<string, HealthCheckResponse> = {};
        for (const [service, status] of this.#statuses) statuses[service] = response(status);
        return Promise.resolve({ statuses });
      },
      // An unknown service is watched too: SERVICE_UNKNOWN now, and its
      // status once it is registered (the standard keeps the call open).
      watch: async (request, responses, context) => {
        const current = () => this.#statuses.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
        let last = current();
        await responses.send(response(last));
        let wake: (changed: boolean) => void = () => undefined;
        const watcher = (service: string) => {
          if (service === request.service) wake(true);
        };
        const onAbort = () => {
          wake(false);
        };
        this.#watchers.add(watcher);
        context.signal.addEventListener("abort", onAbort, { once: true });
        try {
          for (;;) {
            const changed = context.signal.aborted ? false : await new Promise<boolean>((resolve) => (wake = resolve));
            if (!changed) return;
            const next = current();
            if (next !== last) {
              last = next;
              await responses.send(response(next));
            }
          }
        } finally {
          this.#watchers.delete(watcher);
          context.signal.removeEventListener("abort", onAbort);
        }
      },
    };
  }
}

function response(status: ServingStatus): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status });
}

export { Health };
