// Drive OHIF in headless Chromium (playwright-core) through what a reader does with the
// node's results, and record what the viewer shows.
//
// Usage: node drive_ohif.cjs PLAN.json
// PLAN.json: {
//   "viewerUrl": "http://127.0.0.1:PORT",  "studyUid": "...",
//   "segSeriesNumber": 1010, "srSeriesNumber": 2010,
//   "outDir": "/abs/dir",  "chromium": "/usr/bin/chromium",  "timeoutMs": 60000,
//   "probabilitySegSeriesNumber": 7010,  "uncertaintyMapSeriesNumber": 8010   (optional)
// }
// Steps: open the study; screenshot the source image; open the SEG (answering OHIF's
// "open this Segmentation?" prompt) and screenshot every image with it; open the SR and, on
// every image of the series, screenshot it and read the annotation layer OHIF draws.  Each
// screenshot comes with the viewport's geometry (where image pixels land on the page), its
// annotation layer and the SOP Instance UID shown.
// With the optional series numbers, two more steps follow, each recorded on its own (a
// failure there is recorded in result.probabilitySeg / result.uncertaintyMap and does not
// fail the run): open the FRACTIONAL SEG and record what OHIF shows (prompt, loaded
// segmentations, notifications, console errors); open the uncertainty Parametric Map and
// capture the viewport OHIF opens for it, with the volumes it shows.
// The result is written to OUT_DIR/result.json; the exit status is 0 when every step ran
// (whether the results are right is for the caller to judge), 1 otherwise.  playwright-core is
// found through NODE_PATH.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-dev-shm-usage',
];
const VIEWPORT = { width: 1600, height: 1000 };

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = plan.timeoutMs || 60000;
const result = {
  steps: [], console: [], screenshots: {}, images: {}, seg: [], sr: [], error: null,
};
const started = Date.now();

function step(name) {
  result.steps.push({ name, atMs: Date.now() - started });
}

// Runs in the page: the active viewport's image and where its pixels are drawn
// (null until OHIF has set up its services and shows an image).
function viewportState() {
  try {
    const cs = window.cornerstone;
    const grid = window.services && window.services.viewportGridService;
    if (!cs || !grid) return null;
    const viewportId = grid.getActiveViewportId();
    let viewport = null;
    for (const engine of cs.getRenderingEngines()) {
      viewport = engine.getViewport(viewportId) || viewport;
    }
    if (!viewport || typeof viewport.getCurrentImageId !== 'function') return null;
    const imageId = viewport.getCurrentImageId();
    if (!imageId || !viewport.getImageData || !viewport.getImageData()) return null;
    const match = /\/instances\/([0-9.]+)\/frames\/(\d+)/.exec(imageId);
    const instance = cs.metaData.get('instance', imageId) || {};
    const canvasRect = viewport.canvas.getBoundingClientRect();
    const toPage = (column, row) => {
      const world = cs.utilities.imageToWorldCoords(imageId, [column, row]);
      const [x, y] = viewport.worldToCanvas(world);
      return [x + canvasRect.left, y + canvasRect.top];
    };
    // The annotation layer: text boxes (tagged with the annotation's UID, for an SR group its
    // Tracking Unique Identifier) and polylines, in page coordinates.
    const layer = viewport.element.querySelector('svg.svg-layer');
    const layerRect = layer ? layer.getBoundingClientRect() : canvasRect;
    const lines = (node) => {
      const spans = Array.from(node.querySelectorAll('tspan')).map((s) => s.textContent);
      return spans.length ? spans : [node.textContent];
    };
    const svgTexts = layer ? Array.from(layer.querySelectorAll('text')).map(lines) : [];
    const annotations = layer
      ? Array.from(layer.querySelectorAll('[data-annotation-uid]')).map((g) => ({
        uid: g.getAttribute('data-annotation-uid'),
        lines: Array.from(g.querySelectorAll('text')).flatMap(lines),
      }))
      : [];
    const polylines = layer
      ? Array.from(layer.querySelectorAll('polyline')).map((p) => ({
        stroke: p.getAttribute('stroke'),
        points: Array.from(p.points).map((pt) => [pt.x + layerRect.left, pt.y + layerRect.top]),
      }))
      : [];
    return {
      viewportId,
      imageId,
      imageIndex: viewport.getCurrentImageIdIndex(),
      imageCount: viewport.getImageIds().length,
      sopInstanceUid: instance.SOPInstanceUID || (match && match[1]),
      rows: instance.Rows,
      columns: instance.Columns,
      canvas: { left: canvasRect.left, top: canvasRect.top, width: canvasRect.width,
        height: canvasRect.height },
      // Page coordinates (CSS pixels) of image coordinates (column, row) = (0,0), (1,0), (0,1),
      // in cornerstone's image coordinates (the top-left corner of the image is (0, 0)).
      origin: toPage(0, 0),
      columnStep: toPage(1, 0),
      rowStep: toPage(0, 1),
      svgTexts,
      annotations,
      polylines,
    };
  } catch (err) {
    return null;
  }
}

// Runs in the page: draw the active viewport now and wait for two frames.
async function renderNow() {
  const cs = window.cornerstone;
  const viewportId = window.services.viewportGridService.getActiveViewportId();
  for (const engine of cs.getRenderingEngines()) {
    const viewport = engine.getViewport(viewportId);
    if (viewport) viewport.render();
  }
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

async function capture(page, name) {
  await page.evaluate(renderNow);
  const state = await page.evaluate(viewportState);
  const file = path.join(plan.outDir, `${name}.png`);
  await page.screenshot({ path: file });
  result.screenshots[name] = file;
  result.images[name] = state;
  if (!state) throw new Error(`screenshot ${name}: the viewport shows no image`);
  return state;
}

// Wait until annotations (text boxes of SR groups) are on the viewport's annotation layer.
// OHIF may add them without drawing them, so each poll without them asks for a render.
async function waitForAnnotations(page, waitMs) {
  await page.waitForFunction(() => {
    if (document.querySelectorAll('svg.svg-layer [data-annotation-uid] text').length > 0) {
      return true;
    }
    try {
      const viewportId = window.services.viewportGridService.getActiveViewportId();
      for (const engine of window.cornerstone.getRenderingEngines()) {
        const viewport = engine.getViewport(viewportId);
        if (viewport) viewport.render();
      }
    } catch (err) {
      // Not ready yet.
    }
    return false;
  }, null, { timeout: waitMs, polling: 500 });
}

// Show each image of the active viewport's stack in turn and capture it as PREFIX-N.png.
// With expectAnnotations, wait a while for annotations on each image (an image without any
// is still captured: the caller judges).
async function captureEveryImage(page, prefix, expectAnnotations = false) {
  const { imageCount } = await page.evaluate(viewportState);
  const states = [];
  for (let index = 0; index < imageCount; index += 1) {
    await page.evaluate(async (i) => {
      const cs = window.cornerstone;
      const viewportId = window.services.viewportGridService.getActiveViewportId();
      for (const engine of cs.getRenderingEngines()) {
        const viewport = engine.getViewport(viewportId);
        if (viewport) await viewport.setImageIdIndex(i);
      }
    }, index);
    await page.waitForTimeout(500);
    if (expectAnnotations) {
      await waitForAnnotations(page, 10000).catch(() => undefined);
    }
    states.push(await capture(page, `${prefix}-${index + 1}`));
  }
  return states;
}

async function dismissTour(page) {
  const skip = page.getByText('Skip all', { exact: true });
  try {
    await skip.waitFor({ state: 'visible', timeout: 5000 });
    await skip.click();
  } catch (err) {
    // No onboarding tour shown.
  }
}

async function openSeries(page, seriesNumber) {
  const thumbnail = page.locator(
    `[data-cy^="study-browser-thumbnail"][data-series="${seriesNumber}"]`);
  await thumbnail.first().dblclick({ timeout });
}

// Runs in the page: the toasts and alerts OHIF shows, and the segmentations it holds.
function shownState() {
  const texts = Array.from(document.querySelectorAll(
    '[data-sonner-toast], [role="alert"], [role="status"], [role="dialog"]'))
    .map((n) => n.innerText.trim()).filter((t) => t);
  const seg = window.cornerstoneTools && window.cornerstoneTools.segmentation;
  const segmentations = seg ? seg.state.getSegmentations().map((s) => ({
    label: s.label,
    segments: Object.values(s.segments).map((g) => g && g.label),
  })) : [];
  return { texts, segmentations };
}

// Runs in the page: the active viewport's type and the volumes (actors) it shows.
function viewportVolumes() {
  const viewportId = window.services.viewportGridService.getActiveViewportId();
  for (const engine of window.cornerstone.getRenderingEngines()) {
    const viewport = engine.getViewport(viewportId);
    if (viewport) {
      return {
        type: viewport.type,
        actors: viewport.getActors().map((a) => a.referencedId || a.uid),
      };
    }
  }
  return null;
}

async function openProbabilitySeg(page) {
  const record = { prompt: false, error: null };
  const firstConsole = result.console.length;
  try {
    await openSeries(page, plan.probabilitySegSeriesNumber);
    try {
      await page.getByText('Do you want to open this Segmentation?').waitFor({ timeout: 15000 });
      record.prompt = true;
      await page.getByRole('button', { name: 'Yes', exact: true }).click();
    } catch (err) {
      // No prompt shown.
    }
    await page.waitForTimeout(5000);
    Object.assign(record, await page.evaluate(shownState));
    await capture(page, 'probability-seg').catch((err) => { record.captureError = String(err); });
  } catch (err) {
    record.error = String(err && err.stack ? err.stack : err);
  }
  record.console = result.console.slice(firstConsole);
  return record;
}

async function openUncertaintyMap(page) {
  const record = { error: null };
  const firstConsole = result.console.length;
  try {
    await openSeries(page, plan.uncertaintyMapSeriesNumber);
    await page.waitForFunction(() => {
      try {
        const viewportId = window.services.viewportGridService.getActiveViewportId();
        for (const engine of window.cornerstone.getRenderingEngines()) {
          const viewport = engine.getViewport(viewportId);
          if (viewport && viewport.getActors().length >= 2) return true;
        }
      } catch (err) {
        // Not ready yet.
      }
      return false;
    }, null, { timeout, polling: 250 });
    await page.waitForTimeout(2000);
    record.viewport = await page.evaluate(viewportVolumes);
    record.state = await capture(page, 'uncertainty-map');
    Object.assign(record, await page.evaluate(shownState));
  } catch (err) {
    record.error = String(err && err.stack ? err.stack : err);
    try {
      Object.assign(record, await page.evaluate(shownState));
      const file = path.join(plan.outDir, 'uncertainty-map-failure.png');
      await page.screenshot({ path: file });
      result.screenshots['uncertainty-map-failure'] = file;
    } catch (shotErr) {
      record.console = [`no failure screenshot: ${shotErr}`];
    }
  }
  record.console = [...(record.console || []), ...result.console.slice(firstConsole)];
  return record;
}

let page = null;

async function main() {
  fs.mkdirSync(plan.outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: plan.chromium || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    timeout,
  });
  try {
    const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
    page = await context.newPage();
    page.setDefaultTimeout(timeout);
    page.on('console', (m) => {
      if (m.type() === 'error') result.console.push(m.text().slice(0, 500));
    });
    page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message.slice(0, 500)}`));

    step('open study');
    await page.goto(`${plan.viewerUrl}/viewer?StudyInstanceUIDs=${plan.studyUid}`);
    await page.waitForFunction(viewportState, null, { timeout, polling: 250 });
    await dismissTour(page);
    await capture(page, 'source');

    step('open SEG');
    await openSeries(page, plan.segSeriesNumber);
    await page.getByText('Do you want to open this Segmentation?').waitFor({ timeout });
    await page.getByRole('button', { name: 'Yes', exact: true }).click();
    await page.waitForFunction(() => {
      const seg = window.cornerstoneTools && window.cornerstoneTools.segmentation;
      return seg && seg.state.getSegmentations().length > 0;
    }, null, { timeout, polling: 250 });
    // The labelmap is attached to the viewport asynchronously: wait until it is.
    await page.waitForFunction(() => {
      const seg = window.cornerstoneTools.segmentation;
      const viewportId = window.services.viewportGridService.getActiveViewportId();
      return seg.state.getSegmentationRepresentations(viewportId).length > 0;
    }, null, { timeout, polling: 250 });
    await page.waitForTimeout(1000);
    await capture(page, 'seg');
    result.seg = await captureEveryImage(page, 'seg-image');
    result.segmentations = await page.evaluate(() =>
      window.cornerstoneTools.segmentation.state.getSegmentations().map((s) => ({
        segmentationId: s.segmentationId,
        label: s.label,
        segments: Object.values(s.segments).map((g) => g && g.label),
      })));

    step('open SR');
    await openSeries(page, plan.srSeriesNumber);
    await waitForAnnotations(page, timeout);
    // "Do you want to continue tracking measurements for this study?": answer No, which keeps
    // the report read-only (Yes tries to make the contours editable, and loses them).
    const decline = page.getByRole('button', { name: 'No', exact: true });
    try {
      await decline.waitFor({ state: 'visible', timeout: 5000 });
      await decline.click();
    } catch (err) {
      // No prompt shown.
    }
    await capture(page, 'sr');
    result.sr = await captureEveryImage(page, 'sr-image', true);
    if (plan.probabilitySegSeriesNumber) {
      step('open probability SEG');
      result.probabilitySeg = await openProbabilitySeg(page);
    }
    if (plan.uncertaintyMapSeriesNumber) {
      step('open uncertainty map');
      result.uncertaintyMap = await openUncertaintyMap(page);
    }
    step('done');
  } catch (err) {
    result.error = String(err && err.stack ? err.stack : err);
    if (page) {
      const file = path.join(plan.outDir, 'failure.png');
      try {
        await page.screenshot({ path: file });
        result.screenshots.failure = file;
        result.failureText = (await page.evaluate(() => document.body.innerText)).slice(0, 4000);
      } catch (shotErr) {
        result.console.push(`no failure screenshot: ${shotErr}`);
      }
    }
  } finally {
    await browser.close();
  }
}

main()
  .catch((err) => {
    result.error = result.error || String(err && err.stack ? err.stack : err);
  })
  .finally(() => {
    fs.writeFileSync(path.join(plan.outDir, 'result.json'), JSON.stringify(result, null, 2));
    process.exitCode = result.error ? 1 : 0;
  });
