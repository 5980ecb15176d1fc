// flaky: fails with exit status 75 (retry) on attempts 1 and 2, then succeeds.
import { EXIT_OK, EXIT_RETRY, Meta } from "../../../guest-sdk/assemblyscript/sluice";

const SUCCEEDS_ON: u32 = 3;

const meta = Meta.read();
if (meta.attempt < SUCCEEDS_ON) {
  process.stderr.write(`flaky: attempt ${meta.attempt} of ${meta.maxAttempts} fails on purpose\n`);
  process.exit(EXIT_RETRY);
}
process.stdout.write(`flaky: succeeded on attempt ${meta.attempt}\n`);
process.exit(EXIT_OK);
