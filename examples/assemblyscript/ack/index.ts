// ack: acknowledges every message after printing one line about it:
//   ack topic=<topic> id=<message id> attempt=<n> bytes=<payload length>
import { EXIT_OK, Meta, readPayload } from "../../../guest-sdk/assemblyscript/sluice";

const payload = readPayload();
const meta = Meta.read();
process.stdout.write(
  `ack topic=${meta.topic} id=${meta.messageId} attempt=${meta.attempt} bytes=${payload.length}\n`,
);
process.exit(EXIT_OK);
