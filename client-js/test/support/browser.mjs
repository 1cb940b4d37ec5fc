// Headless Debian Chromium through playwright-core (Playwright's own browser download
// does not work on this machine type; see ../shared/TOOLCHAIN.md).
import { chromium } from 'playwright-core';

export const chromiumPath = process.env.WEFT_CHROMIUM ?? '/usr/bin/chromium';

export function launch() {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Opens the example app in a page and waits until the replica is open. */
export async function openApp(context, url, { waitForOffline = false } = {}) {
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error('page error:', error));
  await page.goto(url);
  await page.waitForFunction(() => window.weft !== undefined);
  if (waitForOffline) await page.waitForFunction(() => document.documentElement.dataset.offlineReady === 'true');
  return page;
}

/** The titles of the todos shown, in order. */
export function titles(page) {
  return page.locator('[data-testid=todo] [data-testid=title]').allTextContents();
}

/** Adds a todo through the form. */
export async function addTodo(page, title) {
  await page.fill('[data-testid=new-title]', title);
  await page.press('[data-testid=new-title]', 'Enter');
  await page.locator('[data-testid=title]', { hasText: title }).first().waitFor();
}
