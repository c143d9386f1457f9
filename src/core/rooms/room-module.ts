import type { RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { RoomService } from "../../../gen/parley/v1/room_service_pb.js";
import { bindService, type ServiceBinding } from "../../runtime/index.js";
import type { UnitOfWork } from "../store/unit-of-work.js";
import { DEFAULT_ROOM_LIMITS, type RoomLimits, roomServiceHandlers } from "./room-service.js";
import { RoomStore } from "./room-store.js";

/**
 * RoomService, assembled. Its events join the rooms' logs, so they go out
 * through chat's fan-out (`published`) and, across instances, on chat's
 * NOTIFY channel.
 */
export function createRoomModule(deps: {
  instanceId: string;
  unitOfWork: UnitOfWork;
  published: (events: readonly RoomEvent[]) => void;
  limits?: Partial<RoomLimits>;
  implicitRooms?: boolean;
}): { readonly binding: ServiceBinding } {
  const handlers = roomServiceHandlers({
    unitOfWork: deps.unitOfWork,
    store: new RoomStore(deps.instanceId),
    published: deps.published,
    limits: { ...DEFAULT_ROOM_LIMITS, ...deps.limits },
    implicitRooms: deps.implicitRooms,
  });
  return { binding: bindService(RoomService, handlers) };
}
