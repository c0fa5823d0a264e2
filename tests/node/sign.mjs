// Signs webhook bodies the way GitHub does, with GitHub's own code (@octokit/webhooks-methods
// `sign`): an independent signer for the webhook tests (tests/github_webhook.rs).
//
//   node sign.mjs SECRET_FILE BODY_FILE [SECRET_FILE BODY_FILE ...]
//
// prints one `X-Hub-Signature-256` value (`sha256=<64 hex>`) per pair, in order. A secret
// file's one trailing newline is not part of the secret (as `grantline serve` reads it); a body
// is signed as its exact bytes, which must be UTF-8 (sign() takes a string).
import { readFileSync } from "node:fs";
import { sign } from "@octokit/webhooks-methods";

const args = process.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0) {
  console.error("usage: node sign.mjs SECRET_FILE BODY_FILE [SECRET_FILE BODY_FILE ...]");
  process.exit(2);
}
const utf8 = new TextDecoder("utf-8", { fatal: true });
const lines = [];
for (let i = 0; i < args.length; i += 2) {
  const secret = readFileSync(args[i], "utf8").replace(/\n$/, "");
  const body = utf8.decode(readFileSync(args[i + 1]));
  lines.push(await sign(secret, body));
}
process.stdout.write(lines.join("\n") + "\n");
