"""The Jam tab in headless Chromium for minutes: is every cycle scheduled before the previous one
ends (no gap), and does a prompt change reach the audio at the next border?

Starts `musicgen-stem app` on a free port (the shipped model unless --model), uploads a drum loop
of one bar, starts the jam, and reads the page's player (`window.__mgsJam`, assets/jam.js) every
`--every` s: the audio clock, the end of the audio scheduled so far (their difference is the lead;
a lead at or below 0 is a gap) and the cycles scheduled. Halfway it sends a new prompt and records
the cycle from which the server's takes read it. Needs Debian's chromium and chromedriver.

    python benchmarks/jam_browser.py --minutes 2 [--bpm 120] [--model DIR] [--out jam_browser.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def drum_bar(path: Path, bpm: float, sr: int = 32000) -> Path:
    """One bar of 4/4: kick-like thumps on 1 and 3, a click on every 8th."""
    n = round(4 * 60 / bpm * sr)
    x, t = np.zeros(n), np.arange(n) / sr
    for i, start in enumerate(np.arange(0, n / sr, 30 / bpm)):
        a = round(start * sr)
        if i % 4 == 0:
            x[a : a + 4000] += np.sin(2 * np.pi * 55 * t[:4000]) * np.exp(-t[:4000] * 30)
        x[a : a + 300] += 0.3 * np.random.default_rng(i).standard_normal(300) * np.hanning(600)[300:]
    sf.write(path, np.clip(x, -1, 1) * 0.8, sr, subtype="PCM_16")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--every", type=float, default=0.5, help="seconds between readings of the player")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="jam-browser-"))
    loop = drum_bar(root / "drums.wav", args.bpm)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "musicgen_stem.app", "--port", str(port), "--output-dir", str(root / "out")]
    cmd += ["--model", args.model] if args.model else []
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(cmd, env=env, stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}/"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--mute-audio",
        "--window-size=1280,2000",
    ):
        opts.add_argument(flag)
    opts.add_argument("--autoplay-policy=no-user-gesture-required")
    driver = None
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
        driver.get(url)
        time.sleep(3)
        [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']") if b.text.strip() == "Jam"][
            0
        ].click()
        time.sleep(1)
        driver.find_element(By.CSS_SELECTOR, "#mgs-jam-drums input[type='file']").send_keys(str(loop))
        time.sleep(2)
        driver.find_element(By.CSS_SELECTOR, "#mgs-jam-bpm input").send_keys(str(args.bpm))
        driver.find_element(By.CSS_SELECTOR, "#mgs-jam-prompt textarea").send_keys("a funky slap bass")
        driver.find_element(By.ID, "mgs-jam-start").click()
        read = "const j = window.__mgsJam; return j.ctx ? [j.ctx.currentTime, j.next, j.scheduled] : null;"
        readings, began, changed_at = [], time.monotonic(), None
        while time.monotonic() - began < args.minutes * 60:
            r = driver.execute_script(read)
            if r and r[2] > 0:
                readings.append(
                    {"t": round(time.monotonic() - began, 2), "clock": r[0], "end": r[1], "cycles": r[2]}
                )
            if changed_at is None and time.monotonic() - began > args.minutes * 30:
                box = driver.find_element(By.CSS_SELECTOR, "#mgs-jam-command textarea")
                box.send_keys("prompt a walking jazz bass")
                driver.find_element(By.ID, "mgs-jam-send").click()
                changed_at = readings[-1]["cycles"] if readings else 0
            time.sleep(args.every)
        driver.find_element(By.ID, "mgs-jam-stop").click()
        deadline = time.monotonic() + 120
        while "Jammed" not in driver.find_element(By.ID, "mgs-summary").text and time.monotonic() < deadline:
            time.sleep(0.5)
        link = driver.find_element(By.CSS_SELECTOR, "#mgs-mixer a.mgs-dl[data-kind='zip']").get_attribute(
            "href"
        )
        with urllib.request.urlopen(link) as r:  # the session's pack, before the page closes and it goes
            (root / "session.zip").write_bytes(r.read())
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
    started = [r for r in readings if r["cycles"] >= 1]
    leads = [r["end"] - r["clock"] for r in started]
    result: dict = {}
    if (root / "session.zip").is_file():  # its stems.json holds the jam's cycles
        with zipfile.ZipFile(root / "session.zip") as z:
            result = json.loads(z.read("stems.json")).get("meta", {})
    prompts = [c.get("prompt") for c in result.get("cycles", [])]
    first_new = next((i for i, p in enumerate(prompts) if p and "jazz" in p), None)
    figures = {
        "minutes": args.minutes,
        "readings": len(started),
        "cycles_scheduled": started[-1]["cycles"] if started else 0,
        "min_lead_s": round(min(leads), 3) if leads else None,
        "gaps": sum(lead <= 0 for lead in leads),
        "prompt_sent_after_cycles": changed_at,
        "first_cycle_with_new_prompt": first_new,
        "late_cycles": sum(bool(c.get("late")) for c in result.get("cycles", [])),
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"figures": figures, "readings": readings}, indent=1))


if __name__ == "__main__":
    main()
