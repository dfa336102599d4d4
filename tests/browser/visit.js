// Visits pages in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// and reports what a person would see: tests/dashboard.rs runs it.
//
// Input (argv[2], JSON): { "visits": [ { "name", "url", "width", "height", "waitMs",
// "screenshot" } ] }. For each visit: open the page at that viewport, wait, save a full-page
// screenshot, and report the console errors, failed requests, the text of every
// [data-figure] element, the embedded board JSON (#board-data), the banners shown and
// whether the page is wider than the viewport. Output (stdout): one JSON array.
"use strict";
const { chromium } = require("playwright-core");

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

async function main() {
  const input = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: FLAGS,
  });
  const results = [];
  try {
    for (const visit of input.visits) {
      const context = await browser.newContext({
        viewport: { width: visit.width, height: visit.height },
        deviceScaleFactor: 1,
      });
      const page = await context.newPage();
      const errors = [];
      page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
      page.on("pageerror", (e) => errors.push("page error: " + e.message));
      page.on("requestfailed", (r) => errors.push("request failed: " + r.url() + " " + (r.failure() || {}).errorText));
      page.on("response", (r) => { if (r.status() >= 400) errors.push("HTTP " + r.status() + ": " + r.url()); });
      await page.goto(visit.url, { waitUntil: "load" });
      if (visit.waitMs) await page.waitForTimeout(visit.waitMs);
      const seen = await page.evaluate(() => {
        const figures = {};
        for (const el of document.querySelectorAll("[data-figure]")) {
          figures[el.getAttribute("data-figure")] = el.textContent.trim();
        }
        const data = document.getElementById("board-data");
        const banners = [...document.querySelectorAll(".banner")].map((b) => b.id || b.className);
        return {
          figures,
          board: data ? JSON.parse(data.textContent) : null,
          state: (document.getElementById("state") || {}).textContent || null,
          banners,
          text: document.body.innerText,
          overflow: document.documentElement.scrollWidth > window.innerWidth,
          externals: [...document.querySelectorAll("[src],link[href]")]
            .map((e) => e.getAttribute("src") || e.getAttribute("href")),
        };
      });
      if (visit.screenshot) await page.screenshot({ path: visit.screenshot, fullPage: true });
      results.push({ name: visit.name, errors, ...seen });
      await context.close();
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
