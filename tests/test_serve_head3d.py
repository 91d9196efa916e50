"""The browser demo's 3-D heads (three.js, vendored) driven by a live session's ARKit frames, in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import browser_missing, wait_js

import unils
from unils import UniLS
from unils.serve import ServeConfig, ServerThread

STATIC = Path(unils.__file__).parent / "serve" / "static"
DIALOGUE = Path(__file__).resolve().parents[1] / "examples" / "dialogue"


def test_three_js_is_vendored_with_its_licence():
    bundle = (STATIC / "three.min.js").read_text()
    assert (
        bundle.startswith("/**\n * @license\n * Copyright 2010-")
        and "SPDX-License-Identifier: MIT" in bundle[:200]
    )
    assert "MIT License" in (STATIC / "three.LICENSE.txt").read_text()
    assert len(bundle) < 700_000
    page = (STATIC / "index.html").read_text() + (STATIC / "head3d.js").read_text()
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no CDN


@pytest.mark.slow
@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_browser_shows_two_3d_heads_from_a_live_session(tmp_path):
    """A stereo file (you: 2 s of silence then speech; partner: silent) streamed by the page: both heads render,
    your mouth opens when you speak, the partner's stays closed, no console errors."""
    import soundfile as sf
    from playwright.sync_api import sync_playwright

    a, sr = sf.read(DIALOGUE / "person_a.flac", dtype="float32")
    me = np.zeros(6 * sr, np.float32)
    me[2 * sr :] = a[: 4 * sr]
    wav = tmp_path / "talk.wav"
    sf.write(wav, np.stack([me, np.zeros_like(me)], axis=1), sr, subtype="PCM_16")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    model = UniLS.from_pretrained("demo")
    with ServerThread(model, ServeConfig(port=0)) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(srv.url + "?hop=25", timeout=60_000)
            wait_js(page, "window.unilsDemo.head3d !== null", 30)
            assert (
                page.evaluate("window.unilsDemo.view") == "3d"
                and page.evaluate("window.unilsDemo.head3d.shapes") == 51
            )
            page.set_input_files("#file", str(wav))
            wait_js(page, "window.unilsDemo.closeCode !== null", 120)
            wait_js(page, "window.unilsDemo.framesShown >= window.unilsDemo.framesReceived", 30)
            demo = page.evaluate("window.unilsDemo")
            assert demo["errors"] == [] and demo["closeCode"] == 1000, demo["status"]
            assert demo["ready"]["hello"]["both"] is True and demo["ready"]["arkit_names"][17] == "jawOpen"
            assert demo["framesReceived"] == 150 and demo["head3d"]["framesRendered"] > 10
            gaps = np.array(
                demo["head3d"]["gaps"]
            )  # cm between the inner lips, per frame shown: you, partner
            assert len(gaps) >= 10
            assert gaps[:, 0].max() > 0.5, gaps[:, 0]  # you spoke: your mouth opened
            assert gaps[:, 1].max() < 0.3, gaps[:, 1]  # the silent partner's stayed closed
            # the canvas shows two shaded heads on the page's background
            shot = tmp_path / "heads.png"
            page.locator("#heads").screenshot(path=str(shot))
            from PIL import Image

            img = np.asarray(Image.open(shot).convert("RGB")).astype(np.float32)
            h, w = img.shape[:2]
            for x in (w // 4, 3 * w // 4):
                face = img[h // 4 : 3 * h // 4, x - w // 16 : x + w // 16]
                assert face.std() > 10 and face[..., 0].mean() > face[..., 2].mean() + 15  # skin, shaded
            assert img[h // 2, w // 2].std() < 5  # between the heads: the plain background
            assert not [c for c in console if c.startswith(("error", "pageerror"))], console
        finally:
            browser.close()
