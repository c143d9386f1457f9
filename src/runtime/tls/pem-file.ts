import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";

/** What a PEM file must hold: one or more certificates, or exactly one unencrypted private key. */
export type PemKind = "certificate" | "private key";

/** A PEM file that could not be used; the message names the variable that points at it. */
export class PemFileError extends Error {
  override readonly name = "PemFileError";
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g;

/**
 * A PEM file named by a configuration variable, read and checked when it is
 * loaded. The contents stay out of logs and JSON (a key must never be
 * printed with the configuration); `reread` loads the same path again for a
 * certificate reload.
 */
export class PemFile {
  readonly #pem: Buffer;

  private constructor(
    readonly variable: string,
    readonly path: string,
    readonly kind: PemKind,
    pem: Buffer,
  ) {
    this.#pem = pem;
  }

  /** Reads and checks `path`; a PemFileError names `variable` and says what is wrong. */
  static read(variable: string, path: string, kind: PemKind): PemFile {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new PemFileError(`${variable}: cannot read ${path} (${reason})`);
    }
    checkPem(variable, path, kind, bytes);
    return new PemFile(variable, path, kind, bytes);
  }

  /** The file's bytes as read. */
  get pem(): Buffer {
    return this.#pem;
  }

  /** The same file read again (after a rotation); throws PemFileError as `read` does. */
  reread(): PemFile {
    return PemFile.read(this.variable, this.path, this.kind);
  }

  /** The certificates of a certificate file, leaf first. */
  certificates(): X509Certificate[] {
    return blocks(this.#pem).map((block) => new X509Certificate(block.text));
  }

  /** The key of a private-key file. */
  privateKey(): KeyObject {
    return createPrivateKey(this.#pem);
  }

  toJSON(): { variable: string; path: string } {
    return { variable: this.variable, path: this.path };
  }
}

/**
 * Refuses a certificate file and its key that do not belong together: the
 * TLS library would only say "key values mismatch" when the listener starts.
 */
export function checkKeyPair(cert: PemFile, key: PemFile): void {
  const leaf = cert.certificates()[0];
  if (leaf === undefined || !leaf.checkPrivateKey(key.privateKey())) {
    throw new PemFileError(`${key.variable}: ${key.path} is not the private key of the certificate in ${cert.variable} (${cert.path})`);
  }
}

interface Block {
  readonly label: string;
  readonly text: string;
}

function blocks(bytes: Buffer): Block[] {
  return [...bytes.toString("latin1").matchAll(BLOCK)].map((match) => ({ label: match[1] ?? "", text: match[0] }));
}

function checkPem(variable: string, path: string, kind: PemKind, bytes: Buffer): void {
  const found = blocks(bytes);
  if (found.length === 0) throw new PemFileError(`${variable}: ${path} is not a PEM file (no "-----BEGIN ...-----" block); expected a PEM ${kind}`);
  if (kind === "certificate") {
    for (const block of found) {
      if (block.label !== "CERTIFICATE") throw new PemFileError(`${variable}: ${path} holds a PEM "${block.label}" where certificates were expected`);
      try {
        new X509Certificate(block.text);
      } catch (error) {
        throw new PemFileError(`${variable}: ${path} holds a certificate that does not parse (${error instanceof Error ? error.message : String(error)})`);
      }
    }
    return;
  }
  const keys = found.filter((block) => block.label.endsWith("PRIVATE KEY"));
  if (keys.length !== 1 || keys[0]?.label === "ENCRYPTED PRIVATE KEY") {
    const what = keys.length === 0 ? "no private key" : keys.length > 1 ? "more than one private key" : "an encrypted private key (not supported: store it unencrypted, readable by parley only)";
    throw new PemFileError(`${variable}: ${path} holds ${what}; expected one PEM private key`);
  }
  try {
    createPrivateKey(bytes);
  } catch (error) {
    throw new PemFileError(`${variable}: ${path} holds a private key that does not parse (${error instanceof Error ? error.message : String(error)})`);
  }
}
