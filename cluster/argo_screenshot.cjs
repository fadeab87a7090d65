// A screenshot of a page of the Argo UI in headless Chromium (Debian's), driven by
// playwright-core from the npm registry (no browser download):
//   NODE_PATH=.cache/screenshot/node_modules node cluster/argo_screenshot.cjs <url> <png>
// The UI greets a first-time visitor with dialogs (what they use Argo for, what is new in
// this version): they are closed before the screenshot.
const { chromium } = require('playwright-core');

(async () => {
  const [url, out] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    await page.goto(url, { waitUntil: 'networkidle', timeout: 60000 });
    // dialogs come one after another (what do you use Argo for, what is new in this
    // version): close each until none is left
    for (let i = 0; i < 5; i++) {
      await page.waitForTimeout(1000);
      const close = page.locator('.modal-close, .fa-times, button[aria-label="close"]').first();
      if (!(await close.count()) || !(await close.isVisible().catch(() => false))) break;
      await close.click().catch(() => {});
    }
    // a workflow's DAG is drawn as SVG once the workflow has loaded
    await page.waitForSelector('svg', { timeout: 30000 });
    await page.waitForTimeout(2000);
    await page.screenshot({ path: out });
    console.log(`screenshot of ${url} -> ${out}`);
  } finally {
    await browser.close();
  }
})().catch((err) => { console.error(err); process.exit(1); });
