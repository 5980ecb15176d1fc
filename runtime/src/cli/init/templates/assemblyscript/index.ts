// {{name}}: a sluice handler (ABI 1, guest-sdk/assemblyscript/sluice.ts).
import { EXIT_OK, Meta, readPayload } from "./sluice";

const payload = readPayload();
const meta = Meta.read();
process.stdout.write(
  `{{name}} handled ${meta.messageId} on ${meta.topic} (attempt ${meta.attempt}, ${payload.length} bytes)\n`,
);
process.exit(EXIT_OK);
