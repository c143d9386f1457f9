import { connect, type Socket } from "node:net";

/** HTTP/2 frame types (RFC 9113 §6) the tests send or look for. */
export const FrameType = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7 } as const;

const END_HEADERS = 0x4;
const ACK = 0x1;

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

/**
 * An HTTP/2 client written frame by frame, for what no well-behaved library
 * does: ignoring the server's SETTINGS, opening more streams than allowed.
 * It acknowledges the server's SETTINGS (a client that does not is still
 * in the handshake), and nothing else unless told to.
 */
export class RawHttp2Client {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  readonly #socket: Socket;
  #buffer = Buffer.alloc(0);
  #settingsAcknowledged!: () => void;
  /** Resolves once the server's first SETTINGS has been acknowledged. */
  readonly ready = new Promise<void>((resolve) => {
    this.#settingsAcknowledged = resolve;
  });

  constructor(address: string) {
    const colon = address.lastIndexOf(":");
    this.#socket = connect(Number(address.slice(colon + 1)), address.slice(0, colon));
    this.closed = new Promise((resolve) => {
      this.#socket.once("close", () => {
        resolve();
      });
    });
    this.#socket.on("error", () => undefined);
    this.#socket.on("data", (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      while (this.#buffer.length >= 9) {
        const length = this.#buffer.readUIntBE(0, 3);
        if (this.#buffer.length < 9 + length) break;
        const frame = { type: this.#buffer[3] ?? 0, flags: this.#buffer[4] ?? 0, stream: this.#buffer.readUInt32BE(5) & 0x7fffffff, payload: this.#buffer.subarray(9, 9 + length) };
        this.#buffer = this.#buffer.subarray(9 + length);
        this.frames.push(frame);
        if (frame.type === FrameType.SETTINGS && (frame.flags & ACK) === 0) {
          this.#socket.write(encodeFrame(FrameType.SETTINGS, ACK, 0));
          this.#settingsAcknowledged();
        }
      }
    });
    this.#socket.write(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    this.#socket.write(encodeFrame(FrameType.SETTINGS, 0, 0));
  }

  /** The value of a setting in the server's first SETTINGS frame, if it sent one. */
  serverSetting(id: number): number | undefined {
    const settings = this.frames.find((frame) => frame.type === FrameType.SETTINGS && (frame.flags & ACK) === 0);
    if (settings === undefined) return undefined;
    for (let at = 0; at + 6 <= settings.payload.length; at += 6) {
      if (settings.payload.readUInt16BE(at) === id) return settings.payload.readUInt32BE(at + 2);
    }
    return undefined;
  }

  /**
   * Opens one gRPC stream per id with a HEADERS frame and nothing more: the
   * request never comes, so each stays open without reaching any handler.
   * All in one write.
   */
  openStreams(ids: readonly number[], path: string): void {
    const block = headerBlock([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]);
    this.#socket.write(Buffer.concat(ids.map((id) => encodeFrame(FrameType.HEADERS, END_HEADERS, id, block))));
  }

  /** The GOAWAY the server sent, if any: the last stream it took and its error code. */
  goaway(): { readonly lastStreamId: number; readonly errorCode: number } | undefined {
    const frame = this.frames.find((candidate) => candidate.type === FrameType.GOAWAY);
    return frame === undefined ? undefined : { lastStreamId: frame.payload.readUInt32BE(0) & 0x7fffffff, errorCode: frame.payload.readUInt32BE(4) };
  }

  close(): void {
    this.#socket.destroy();
  }
}

function encodeFrame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK (RFC 7541): every field a literal without indexing, names and values short and not Huffman-coded. */
function headerBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const literal = (text: string) => {
    const bytes = Buffer.from(text);
    if (bytes.length > 126) throw new Error(`header text longer than this encoder writes: ${text}`);
    return Buffer.concat([Buffer.from([bytes.length]), bytes]);
  };
  return Buffer.concat(fields.map(([name, value]) => Buffer.concat([Buffer.from([0]), literal(name), literal(value)])));
}
