import { unwatchFile, watchFile } from "node:fs";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import type { Logger } from "../logger.js";
import { checkKeyPair, type PemFile } from "./pem-file.js";

/** The files of one TLS endpoint: its own certificate and key (both or neither) and the CA it verifies peers against. */
export interface TlsFiles {
  readonly cert?: PemFile | undefined;
  readonly key?: PemFile | undefined;
  readonly ca?: PemFile | undefined;
}

/** What a listener or client needs to build its TLS context, as bytes. */
export interface TlsMaterial {
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  readonly ca: Buffer | undefined;
}

/**
 * The certificates of one TLS endpoint (a listener, or the link to core),
 * held in memory and reloaded from their files on request or when a file
 * changes. A reload that finds a broken set (a missing file, a key that does
 * not match, a half-written rotation) is logged and changes nothing: the
 * endpoint keeps serving with what it had.
 */
export class TlsCertificates {
  #files: TlsFiles;
  readonly #listeners = new Set<() => void>();
  readonly #logger: Logger;
  #stopWatching: (() => void) | undefined;
  #debounce: NodeJS.Timeout | undefined;

  /** `files` were read and checked already (readTlsSettings); `endpoint` names them in logs. */
  constructor(
    files: TlsFiles,
    readonly endpoint: string,
    logger: Logger,
  ) {
    if ((files.cert === undefined) !== (files.key === undefined)) throw new Error(`${endpoint}: a certificate needs its key`);
    this.#files = files;
    this.#logger = logger.child({ tls: endpoint });
  }

  /** The current certificate, key and CA. */
  get material(): TlsMaterial {
    return { cert: this.#files.cert?.pem, key: this.#files.key?.pem, ca: this.#files.ca?.pem };
  }

  /** The variable that names one of the files, for messages that tell an operator what to check. */
  variableOf(part: keyof TlsFiles): string | undefined {
    return this.#files[part]?.variable;
  }

  /** The current material as Node TLS options (for tls.createServer / setSecureContext). */
  secureContextOptions(): SecureContextOptions {
    return optionsOf(this.#files);
  }

  /** Subject, issuer and expiry of the own certificate (for a start-up log line). */
  describe(): Record<string, string | boolean> {
    const leaf = this.#files.cert?.certificates()[0];
    const ca = this.#files.ca?.certificates().map((cert) => cert.subject.replace(/\n/g, ", "));
    return {
      ...(leaf === undefined
        ? {}
        : {
            subject: leaf.subject.replace(/\n/g, ", "),
            issuer: leaf.issuer.replace(/\n/g, ", "),
            not_after: new Date(leaf.validTo).toISOString(),
            expired: Date.parse(leaf.validTo) < Date.now(),
            fingerprint256: leaf.fingerprint256,
          }),
      ...(ca === undefined ? {} : { verifies_against: ca.join(" | ") }),
    };
  }

  /** Calls `listener` after every successful reload that changed something; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Reads every file again and switches to them if they form a valid set.
   * Returns false (logged as a warning) when they do not; the current
   * certificates stay in use.
   */
  reload(): boolean {
    let next: TlsFiles;
    try {
      next = { cert: this.#files.cert?.reread(), key: this.#files.key?.reread(), ca: this.#files.ca?.reread() };
      if (next.cert !== undefined && next.key !== undefined) checkKeyPair(next.cert, next.key);
      // The TLS library's own verdict, before any listener gets them.
      createSecureContext(optionsOf(next));
    } catch (error) {
      this.#logger.warn(
        { category: "VALIDATION", cause: error instanceof Error ? error.message : String(error) },
        "certificate reload refused: the files do not form a valid set; the current certificates stay in use",
      );
      return false;
    }
    const unchanged = (["cert", "key", "ca"] as const).every((part) => samePem(this.#files[part], next[part]));
    if (unchanged) {
      this.#logger.debug("certificate files unchanged");
      return true;
    }
    this.#files = next;
    this.#logger.info(this.describe(), "certificates reloaded");
    for (const listener of [...this.#listeners]) listener();
    return true;
  }

  /**
   * Reloads when a file changes, checked every `intervalMs` (stat polling:
   * it follows the symlink swaps that mounted secrets use). Changes that
   * come together (a certificate and its key) are reloaded once. 0: never.
   */
  watch(intervalMs: number): void {
    if (intervalMs <= 0 || this.#stopWatching !== undefined) return;
    const paths = [...new Set([this.#files.cert, this.#files.key, this.#files.ca].flatMap((file) => (file === undefined ? [] : [file.path])))];
    const changed = () => {
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => this.reload(), Math.min(1_000, intervalMs));
      this.#debounce.unref();
    };
    for (const path of paths) watchFile(path, { interval: intervalMs, persistent: false }, changed);
    this.#stopWatching = () => {
      for (const path of paths) unwatchFile(path, changed);
    };
  }

  /** Stops watching and forgets the listeners. */
  close(): void {
    this.#stopWatching?.();
    this.#stopWatching = undefined;
    clearTimeout(this.#debounce);
    this.#listeners.clear();
  }
}

function optionsOf(files: TlsFiles): SecureContextOptions {
  return {
    ...(files.cert === undefined ? {} : { cert: files.cert.pem, key: files.key?.pem }),
    ...(files.ca === undefined ? {} : { ca: files.ca.pem }),
  };
}

function samePem(a: PemFile | undefined, b: PemFile | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.pem.equals(b.pem);
}
