import { type ServerInterceptor as GrpcServerInterceptor, ServerInterceptingCall } from "@grpc/grpc-js";
import type { ParleyError } from "../../wire/index.js";
import { oversizeError, STATUS_DETAILS_KEY, toGrpcStatus } from "./status.js";

/**
 * A grpc-js server interceptor that turns the library's own refusal of an
 * over-limit request (RESOURCE_EXHAUSTED, no details) into parley's answer:
 * INVALID_ARGUMENT with a VALIDATION ErrorDetail naming the sizes, so that
 * any client, not only parley's, reads "fix the message" rather than the
 * retryable RATE_LIMITED the code table gives RESOURCE_EXHAUSTED.
 *
 * grpc-js ends such a call from inside its base call object, beneath every
 * interceptor's responder, so the status is rewritten on that object itself:
 * this must be the server's first grpc-js interceptor (it is the only one).
 * `onRefused` sees each refusal, as no parley handler or interceptor runs.
 */
export function oversizeAsValidation(onRefused: (error: ParleyError, path: string) => void): GrpcServerInterceptor {
  return (method, call) => {
    const send = call.sendStatus.bind(call);
    call.sendStatus = (status) => {
      // A status with details is parley's own (a RATE_LIMITED refusal among them), never the library's size refusal.
      const refused = status.metadata?.get(STATUS_DETAILS_KEY).length ? undefined : oversizeError(status.code, status.details);
      if (refused === undefined) {
        send(status);
        return;
      }
      onRefused(refused, method.path);
      send(toGrpcStatus(refused));
    };
    return new ServerInterceptingCall(call);
  };
}
