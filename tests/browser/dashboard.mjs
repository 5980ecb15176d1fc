// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core). Run by runtime/tests/browser.rs against a real
// `sluice serve` holding one dead delivery:
//   node dashboard.mjs <url> <token> <read-token> <key> <fixed.wasm> <shots-dir>
// Exits non-zero, naming the step, when anything is not as expected.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const [url, token, readToken, key, fixedWasm, shots] = process.argv.slice(2);
const step = (name) => console.log(`step: ${name}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    // playwright gives every launch a fresh temporary profile of its own
    // (it refuses a --user-data-dir here).
    "--no-first-run",
  ],
});

async function login(context, secret) {
  const page = await context.newPage();
  await page.goto(`${url}/ui`);
  if (!page.url().endsWith("/ui/login")) throw new Error(`not sent to the login form: ${page.url()}`);
  await page.fill("#token", secret);
  await page.click("#login");
  await page.waitForURL(`${url}/ui`);
  return page;
}

try {
  const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  step("log in with the token");
  const page = await login(admin, token);
  await page.locator("#total-dlq").filter({ hasText: "1" }).waitFor();
  await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });
  await page.goto(`${url}/ui/dlq`);
  await page.locator("#matching").filter({ hasText: "1" }).waitFor();
  await page.screenshot({ path: join(shots, "dlq.png"), fullPage: true });
  await page.goto(`${url}/ui`);

  step("find the message by its idempotency key");
  await page.click("text=Search");
  await page.fill("#idempotency_key", key);
  await page.click("#search-go");
  const row = page.locator("#results tbody tr");
  await row.first().waitFor();
  if ((await row.count()) !== 1) throw new Error(`expected one result, got ${await row.count()}`);

  step("open the dead delivery: backtrace and stderr");
  await row.first().locator("td").first().locator("a").click();
  await page.locator(".backtrace").first().waitFor();
  const backtrace = await page.locator(".backtrace").first().innerText();
  if (!backtrace.includes("explode")) throw new Error(`backtrace: ${backtrace}`);
  const stderr = await page.locator(".stderr").first().innerText();
  if (!stderr.includes("bad input")) throw new Error(`stderr: ${stderr}`);
  await page.screenshot({ path: join(shots, "failed-attempt.png"), fullPage: true });
  const detail = page.url();

  step("the read-only token's replay is refused");
  const reader = await browser.newContext();
  const readPage = await login(reader, readToken);
  await readPage.goto(detail);
  await readPage.click("button.replay");
  await readPage.locator("#error").waitFor();
  const refusal = await readPage.locator("#error").innerText();
  if (!refusal.includes("read-only")) throw new Error(`refusal: ${refusal}`);
  await reader.close();

  step("fix the handler, replay, watch it succeed without reloading");
  const wasm = readFileSync(fixedWasm);
  const put = await fetch(`${url}/v1/handlers/h?topic=t`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/wasm", "sluice-policy": '{"retries":0}' },
    body: wasm,
  });
  if (!put.ok) throw new Error(`re-register: ${put.status} ${await put.text()}`);
  // Paused while replaying, so the page shows it waiting; resumed behind
  // the page's back, so only live refresh can show it succeed.
  const api = (path) => fetch(`${url}/v1/handlers/h/${path}`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
  if (!(await api("pause")).ok) throw new Error("pause through the API");
  await page.goto(detail);
  await page.selectOption("#refresh-every", "2");
  await page.click("button.replay");
  await page.waitForURL(detail);
  const state = page.locator("section.delivery").first().locator("h2 [id^=state-]");
  if ((await state.innerText()) !== "ready") throw new Error(`after replay: ${await state.innerText()}`);
  if (!(await api("resume")).ok) throw new Error("resume through the API");
  await page.locator("section.delivery").first().locator(".state-succeeded").waitFor({ timeout: 30000 });

  step("pause and resume the handler");
  await page.goto(`${url}/ui/handlers`);
  await page.click("#handler-h button.pause");
  await page.locator("#handler-h .state").filter({ hasText: "paused" }).waitFor();
  await page.click("#handler-h button.resume");
  await page.locator("#handler-h .state").filter({ hasText: "running" }).waitFor();
  console.log("browser steps: 5 passed, 0 failed");
} catch (e) {
  console.error(`browser test failed: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
