import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";

/** Any generated service descriptor. */
export type AnyService = GenService<GenServiceMethods>;

/** The method table of a generated service (`{ sendMessage: {...}, ... }`). */
export type MethodsOf<S> = S extends GenService<infer M> ? M : never;

type MethodShape = { readonly input: DescMessage; readonly output: DescMessage; readonly methodKind: string };

export type InputOf<M extends MethodShape> = MessageShape<M["input"]>;
export type InputInitOf<M extends MethodShape> = MessageInitShape<M["input"]>;
export type OutputOf<M extends MethodShape> = MessageShape<M["output"]>;
export type OutputInitOf<M extends MethodShape> = MessageInitShape<M["output"]>;
