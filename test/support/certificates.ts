import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TlsCertificates } from "../../src/runtime/tls/certificates.js";
import { PemFile } from "../../src/runtime/tls/pem-file.js";
import type { Logger } from "../../src/runtime/logger.js";

/** Debian's openssl (scripts/ensure-debian-package.sh installs it). */
export const OPENSSL = "/usr/bin/openssl";

/** A certificate and its key, as file paths. */
interface Issued {
  readonly cert: string;
  readonly key: string;
}

interface IssueOptions {
  /** Subject CN. */
  readonly cn: string;
  /** subjectAltName entries, e.g. ["DNS:localhost", "IP:127.0.0.1"]. */
  readonly san?: readonly string[];
  readonly usage: "serverAuth" | "clientAuth";
  /** The CA that signs it (default the main test CA). */
  readonly ca?: "main" | "other";
  /** Where to write it (default `<dir>/<name>.pem` and `.key`): reissuing over existing files is a rotation. */
  readonly name: string;
}

/**
 * A throwaway PKI made with openssl at test time, in a temporary directory:
 * a CA, a server certificate for localhost/127.0.0.1 and a client
 * certificate (CN parley-bridge) signed by it, and a client certificate with
 * the same CN signed by another CA, which must be refused.
 */
export interface TestPki {
  readonly dir: string;
  /** The main CA's certificate. */
  readonly ca: string;
  /** Another CA, trusted by nobody. */
  readonly otherCa: string;
  readonly server: Issued;
  readonly client: Issued;
  readonly foreignClient: Issued;
  /** Issues another certificate (over existing files when `name` is reused). */
  issue(options: IssueOptions): Issued;
  /** Writes `text` to a file in the directory and returns its path. */
  file(name: string, text: string | Buffer): string;
  remove(): void;
}

function openssl(args: readonly string[]): void {
  execFileSync(OPENSSL, args, { stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir: string, name: string, cn: string): string {
  const cert = join(dir, `${name}.pem`);
  openssl([
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", join(dir, `${name}.key`), "-out", cert, "-days", "2", "-subj", `/CN=${cn}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return cert;
}

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "parley-pki-"));
  const ca = makeCa(dir, "ca", "parley test CA");
  const otherCa = makeCa(dir, "other-ca", "some other CA");
  const issue = (options: IssueOptions): Issued => {
    const signer = options.ca === "other" ? "other-ca" : "ca";
    const cert = join(dir, `${options.name}.pem`);
    const key = join(dir, `${options.name}.key`);
    const csr = join(dir, `${options.name}.csr`);
    const extensions = join(dir, `${options.name}.ext`);
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${options.cn}`]);
    const lines = [`extendedKeyUsage=${options.usage}`, "basicConstraints=critical,CA:FALSE"];
    if (options.san !== undefined && options.san.length > 0) lines.push(`subjectAltName=${options.san.join(",")}`);
    writeFileSync(extensions, `${lines.join("\n")}\n`);
    openssl([
      "x509", "-req", "-in", csr, "-CA", join(dir, `${signer}.pem`), "-CAkey", join(dir, `${signer}.key`),
      "-CAcreateserial", "-days", "1", "-out", cert, "-extfile", extensions,
    ]);
    return { cert, key };
  };
  return {
    dir,
    ca,
    otherCa,
    server: issue({ name: "server", cn: "localhost", san: ["DNS:localhost", "IP:127.0.0.1"], usage: "serverAuth" }),
    client: issue({ name: "client", cn: "parley-bridge", san: ["DNS:bridge.parley.test"], usage: "clientAuth" }),
    foreignClient: issue({ name: "foreign-client", cn: "parley-bridge", usage: "clientAuth", ca: "other" }),
    issue,
    file(name, text) {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** TlsCertificates from file paths, read as configuration would read them. */
export function certificatesOf(files: { cert?: string; key?: string; ca?: string }, endpoint: string, logger: Logger): TlsCertificates {
  return new TlsCertificates(
    {
      cert: files.cert === undefined ? undefined : PemFile.read("TEST_CERT", files.cert, "certificate"),
      key: files.key === undefined ? undefined : PemFile.read("TEST_KEY", files.key, "private key"),
      ca: files.ca === undefined ? undefined : PemFile.read("TEST_CA", files.ca, "certificate"),
    },
    endpoint,
    logger,
  );
}
