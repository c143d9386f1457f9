/** The part of the WebSocket API the client uses: the browser's, Node 22's, or the `ws` package's. */
export interface SocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

export const OPEN = 1;

/** The global WebSocket (browsers, Node 22+), or undefined. */
export function defaultSocketFactory(): SocketFactory | undefined {
  const Ctor = (globalThis as { WebSocket?: new (url: string, protocols: string[]) => SocketLike }).WebSocket;
  return Ctor === undefined ? undefined : (url, protocols) => new Ctor(url, protocols);
}
