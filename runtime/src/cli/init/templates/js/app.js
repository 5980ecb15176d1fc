// {{name}}: a sluice handler (a component of the sluice:handler world, sluice.js).
import { sluiceHandler } from "./sluice.js";

export const handler = sluiceHandler((msg) => {
  console.log(`{{name}} handled ${msg.id} on ${msg.topic} (attempt ${msg.attempt}, ${msg.payload.length} bytes)`);
});
