// Drives the Price page's batch upload in headless chromium over the DevTools protocol, as a
// person does: picks a file in the file input, presses "Price the file", watches the progress
// line, then downloads the results as JSON lines and CSV.
//   node batch_upload.js CHROMIUM URL FILE OUT_DIR
// Writes OUT_DIR/prices.jsonl, OUT_DIR/prices.csv and OUT_DIR/batch.png; prints one JSON object:
// {done, status, statuses (every progress line seen), progress: {value, max}, error, timed_out}.
'use strict';
const CDP = require('chrome-remote-interface');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [chromium, url, file, out] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, seconds = 60) {
  for (const end = Date.now() + seconds * 1000; Date.now() < end; await sleep(20)) {
    const v = await fn();
    if (v) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Closes chromium through the protocol (its helper processes go with it), else kills its group.
async function closeBrowser(port, browser, exited) {
  try {
    const { webSocketDebuggerUrl } = await CDP.Version({ port });
    const b = await CDP({ target: webSocketDebuggerUrl });
    await b.Browser.close();
  } catch {
    process.kill(-browser.pid, 'SIGKILL');
  }
  await Promise.race([exited, sleep(10000)]);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pricer-cdp-'));
  const browser = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
    '--window-size=1280,1400', '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'],
  { stdio: 'ignore', detached: true });
  const exited = new Promise((r) => browser.once('exit', r));
  let client, port = 0;
  try {
    // Chromium writes the port it chose into the profile.
    port = await until('chromium to listen', () => {
      try { return Number(fs.readFileSync(path.join(profile, 'DevToolsActivePort'), 'utf8').split('\n')[0]); } catch { return 0; }
    });
    client = await CDP({ port });
    const { Page, Runtime, DOM } = client;
    await Promise.all([Page.enable(), DOM.enable(), Runtime.enable()]);
    await Page.setDownloadBehavior({ behavior: 'allow', downloadPath: path.resolve(out) });
    const js = async (expression) =>
      (await Runtime.evaluate({ expression, awaitPromise: true, returnByValue: true })).result.value;
    await Page.navigate({ url: `${url}#price` });
    // Ready: the page has its listeners and knows whether the server has a model.
    await until('the page to know its model', () => js("document.body.dataset.ready === '1' && !document.querySelector('#batch-go').disabled"));

    const { root } = await DOM.getDocument();
    const { nodeId } = await DOM.querySelector({ nodeId: root.nodeId, selector: '#batch-file' });
    await DOM.setFileInputFiles({ nodeId, files: [path.resolve(file)] });
    await js("document.querySelector('#batch-go').click()");
    const statuses = [];
    let timedOut = false;
    try {
      await until('the batch to finish', async () => {
        const s = await js("document.querySelector('#batch-status').textContent");
        if (s && statuses[statuses.length - 1] !== s) statuses.push(s);
        return js("!!document.body.dataset.batchDone || !document.querySelector('#price-error').hidden");
      }, 120);
    } catch (e) {
      timedOut = true;  // still report how far it got: the statuses say which request hung
    }
    const state = await js(`({
      done: Number(document.body.dataset.batchDone || 0),
      status: document.querySelector('#batch-status').textContent,
      progress: { value: document.querySelector('#batch-progress').value, max: document.querySelector('#batch-progress').max },
      error: document.querySelector('#price-error').hidden ? null : document.querySelector('#price-error').textContent })`);
    const shot = await Page.captureScreenshot({ format: 'png' });
    fs.writeFileSync(path.join(out, 'batch.png'), Buffer.from(shot.data, 'base64'));
    if (!state.error && !timedOut) {
      await js("document.querySelector('#batch-jsonl').click()");
      await js("document.querySelector('#batch-csv').click()");
      await until('the downloads', () => ['prices.jsonl', 'prices.csv'].every((f) => fs.existsSync(path.join(out, f))));
    }
    console.log(JSON.stringify({ ...state, statuses, timed_out: timedOut }));
  } finally {
    if (client) await client.close();
    await closeBrowser(port, browser, exited);
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  }
}

main().catch((e) => {
  console.error(`batch_upload: ${e.message}`);
  process.exit(1);
});
