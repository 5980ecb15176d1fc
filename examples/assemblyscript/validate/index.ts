// validate: acknowledges a payload that is valid JSON (any value) and rejects
// anything else with exit status 65: straight to the DLQ, no retry.
import { EXIT_OK, EXIT_REJECT, readPayload } from "../../../guest-sdk/assemblyscript/sluice";
import { valid } from "../lib/json";

const payload = readPayload();
if (!valid(payload)) {
  process.stderr.write(`validate: reject: malformed JSON payload (${payload.length} bytes)\n`);
  process.exit(EXIT_REJECT);
}
process.stdout.write(`valid: ${payload.length} bytes of JSON\n`);
process.exit(EXIT_OK);
