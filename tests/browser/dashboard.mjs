// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core). Run by runtime/tests/browser.rs against a real
// `sluice serve` holding one dead delivery (the schedule steps create their
// own schedule through the API):
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

  step("the Schedules page lists a schedule created through the API");
  // Markup that would run if it reached the page unescaped.
  const hostile = `<img src=x onerror="window.__xss=1"><b class="xss">bold</b>`;
  const auth = { authorization: `Bearer ${token}` };
  const created = await fetch(`${url}/v1/schedules/nightly`, {
    method: "PUT",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({
      cron: "0 3 * * *", timezone: "Europe/London", topic: "t",
      payload: hostile, headers: { "x-note": hostile },
    }),
  });
  if (!created.ok) throw new Error(`create the schedule: ${created.status} ${await created.text()}`);
  const paused = async () => (await (await fetch(`${url}/v1/schedules/nightly`, { headers: auth })).json()).schedule.paused;
  await page.goto(`${url}/ui/schedules`);
  const srow = page.locator("#schedule-nightly");
  await srow.waitFor();
  const cells = await srow.innerText();
  for (const want of ["0 3 * * *", "Europe/London", "active"]) {
    if (!cells.includes(want)) throw new Error(`schedule row lacks ${want}: ${cells}`);
  }
  await page.screenshot({ path: join(shots, "schedules.png"), fullPage: true });

  step("pause, resume and trigger from the page; a forged post is refused");
  await srow.locator("button", { hasText: "pause" }).click();
  await page.waitForURL(`${url}/ui/schedules/nightly`);
  await page.locator("h1 .badge").filter({ hasText: "paused" }).waitFor();
  if (!(await paused())) throw new Error("the page's pause did not reach the store");
  await page.locator("button", { hasText: "resume" }).click();
  await page.waitForURL(`${url}/ui/schedules/nightly`);
  if ((await page.locator("h1 .badge").count()) !== 0) throw new Error("still shown paused after resume");
  if (await paused()) throw new Error("the page's resume did not reach the store");
  // The session cookie goes with it, but not the page's CSRF token.
  const forged = await page.evaluate(async () => (await fetch("/ui/schedules/nightly/pause", {
    method: "POST", body: new URLSearchParams({ csrf: "forged" }),
  })).status);
  if (forged !== 403) throw new Error(`a post with a forged CSRF token got ${forged}`);
  if (await paused()) throw new Error("the forged post paused the schedule");
  await page.locator("button", { hasText: "trigger now" }).click();
  await page.waitForURL(`${url}/ui/schedules/nightly`);
  const fired = page.locator("tr.occurrence-triggered a");
  await fired.first().waitFor();

  step("hostile payload, header and schedule id are shown as text");
  await fired.first().click();
  await page.locator("#show-text").click();
  const shown = await page.locator("#payload").innerText();
  if (shown !== hostile) throw new Error(`payload shown as ${JSON.stringify(shown)}`);
  if (!(await page.locator("main").innerText()).includes(`x-note: ${hostile}`)) throw new Error("header not shown as text");
  const inert = async (where) => {
    const injected = await page.locator("img[src=x], b.xss").count();
    const ran = await page.evaluate(() => window.__xss);
    if (injected !== 0 || ran !== undefined) throw new Error(`${where}: markup injected (${injected}) or script ran (${ran})`);
  };
  await inert("message page");
  await page.goto(`${url}/ui/schedules/${encodeURIComponent(hostile)}`);
  if (!(await page.locator("body").innerText()).includes("<img src=x")) throw new Error("the unknown id is not named as text");
  await inert("unknown schedule page");
  console.log("browser steps: 9 passed, 0 failed");
} catch (e) {
  console.error(`browser test failed: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
