// ack: acknowledges every message, after printing one line about it.
import { sluiceHandler } from "../../../guest-sdk/js/sluice.js";

export const handler = sluiceHandler((msg) => {
  console.log(`ack topic=${msg.topic} id=${msg.id} attempt=${msg.attempt} bytes=${msg.payload.length}`);
});
