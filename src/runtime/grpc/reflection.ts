import { type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import type { Server } from "@grpc/grpc-js";
import type { AnyService } from "./types.js";

/**
 * Serves gRPC server reflection (v1 and v1alpha) for the given services, so
 * tools such as `buf curl` and `grpcurl` can call them without the .proto
 * files. @grpc/reflection reads serialized FileDescriptorProtos, which the
 * protobuf-es descriptors provide for every file and its imports.
 */
export function addReflection(server: Server, services: readonly AnyService[]): void {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.name)) return;
    files.set(file.name, file);
    for (const dependency of file.dependencies) visit(dependency);
  };
  for (const service of services) visit(service.file);

  const fileDescriptorProtos = [...files.values()].map((file) => Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto)));
  // The package definition format of @grpc/proto-loader, which is all
  // ReflectionService looks at: one entry per service with every file.
  const packageDefinition = Object.fromEntries(services.map((service) => [service.typeName, { fileDescriptorProtos }]));
  new ReflectionService(packageDefinition as unknown as ConstructorParameters<typeof ReflectionService>[0]).addToServer(server);
}
