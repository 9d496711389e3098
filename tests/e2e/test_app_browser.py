"""End-to-end: the web app in headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

Starts `python -m musicgen_stem.app` on a free localhost port with a tiny random model, then
generates, plays the stems, solos one, edits one stem of the result, downloads the zip and takes a
screenshot. Also checks that the page fetched nothing from outside this machine (offline use).
Set MGS_SCREENSHOT_DIR to keep the screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

pytest.importorskip("gradio", reason="the app needs gradio (pip install 'musicgen-stem[app]')")
pytest.importorskip("selenium", reason="the browser test needs selenium")
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(
        f"chromium/chromedriver not found ({CHROMIUM}, {CHROMEDRIVER}); "
        "apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TIMEOUT = float(os.environ.get("MGS_E2E_TIMEOUT", 180))  # seconds for one job on a busy CI machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(str):
    """The app's URL, with the folder of its sessions (`--output-dir`/sessions) and its process."""

    sessions: Path
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the app's process has used (user + system, Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from musicgen_stem.api import MusicGenStem

    root = tmp_path_factory.mktemp("app")
    model_dir = root / "tiny"
    MusicGenStem.from_config("tiny", seed=0, device="cpu").save(model_dir)
    port = _free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    log = open(root / "server.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "musicgen_stem.app", "--model", str(model_dir), "--port", str(port)]
    cmd += ["--max-duration", "2", "--output-dir", str(root / "out"), "--queue", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = Server(f"http://127.0.0.1:{port}/")
    url.sessions, url.pid = root / "out" / "sessions", proc.pid
    try:
        deadline = time.time() + 300  # importing torch + gradio on a busy 2-core machine is slow
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited ({proc.returncode}):\n{(root / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"the app did not start:\n{(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture()
def browser(tmp_path: Path, clicks) -> Iterator[tuple[webdriver.Chrome, Path]]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    microphone = clicks(tmp_path / "microphone.wav", 48000, 2.0, 120.0)  # the fake capture device plays it
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--mute-audio",
        "--window-size=1280,2000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver, downloads
    finally:
        driver.quit()


def _wait(driver: webdriver.Chrome, cond, what: str, timeout: float = TIMEOUT):  # noqa: ANN001
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: cond(d))
    except Exception:
        errors = driver.execute_script(
            "return Array.from(document.querySelectorAll('[class*=\"toast\"]')).map(e => e.innerText)"
        )
        pytest.fail(f"timed out waiting for {what}; messages on the page: {errors}")


def _external_requests(driver: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            p = urlparse(url)
            if p.scheme in ("http", "https", "ws", "wss") and p.hostname not in ("127.0.0.1", "localhost"):
                urls.append(url)
    return urls


def _distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        return len(im.convert("RGB").resize((320, 500)).getcolors(maxcolors=1 << 24) or [])


def test_generate_play_edit_download(server: str, browser: tuple[webdriver.Chrome, Path], tmp_path: Path):
    driver, downloads = browser
    driver.get(server)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-generate"), "the page", 60)
    assert "MusicGen-Stem" in driver.find_element(By.TAG_NAME, "h1").text
    assert "tiny" in driver.find_element(By.ID, "mgs-model-status").text

    # Generate.
    driver.find_element(By.CSS_SELECTOR, "#mgs-prompt textarea").send_keys("punchy drums and a warm bass")
    driver.find_element(By.CSS_SELECTOR, "#mgs-generate").click()
    audios = _wait(
        driver,
        lambda d: [a for a in d.find_elements(By.CSS_SELECTOR, "#mgs-mixer audio") if a.get_attribute("src")],
        "the stem players",
    )
    assert len(audios) == 3
    summary = driver.find_element(By.ID, "mgs-summary").text
    assert "seed" in summary.lower()
    seed = int(summary.lower().split("seed")[1].split()[0])
    assert seed >= 0

    # The stems load and play in sync; solo mutes the other stems.
    _wait(
        driver,
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('#mgs-mixer audio')).every(a => a.readyState >= 2)"
        ),
        "the stems to load",
        60,
    )
    driver.find_element(By.CSS_SELECTOR, "#mgs-mixer [data-mgs-action='play']").click()
    _wait(
        driver,
        lambda d: d.execute_script(
            "const a = Array.from(document.querySelectorAll('#mgs-mixer audio'));"
            "return a.every(x => x.currentTime > 0 || x.ended)"
        ),
        "playback to advance",
        30,
    )
    driver.find_element(
        By.CSS_SELECTOR, "#mgs-mixer .mgs-track[data-stem='drums'] [data-mgs-action='solo']"
    ).click()
    muted = driver.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#mgs-mixer .mgs-track'))"
        ".map(r => [r.dataset.stem, r.querySelector('audio').muted]))"
    )
    assert muted == {"bass": True, "drums": False, "other": True}
    mix = driver.find_elements(By.CSS_SELECTOR, "#mgs-mix a[download], #mgs-mix audio[src]")
    assert mix and "mix.wav" in (mix[0].get_attribute("href") or mix[0].get_attribute("src")), "no mix player"

    # Edit one stem of the last result.
    tab = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']") if b.text.strip() == "Edit"]
    assert tab, "no Edit tab"
    tab[0].click()
    _wait(driver, lambda d: d.find_element(By.ID, "mgs-edit").is_displayed(), "the Edit tab", 30)
    driver.find_element(By.ID, "mgs-edit").click()
    _wait(driver, lambda d: "Edited" in d.find_element(By.ID, "mgs-summary").text, "the edit")
    assert "regenerated: bass" in driver.find_element(By.ID, "mgs-mixer").text
    _wait(  # the new mixer starts with every stem audible
        driver,
        lambda d: d.execute_script(
            "const a = Array.from(document.querySelectorAll('#mgs-mixer audio'));"
            "return a.length === 3 && a.every(x => x.readyState >= 1 && !x.muted)"
        ),
        "the new mixer to reset solo/mute",
        30,
    )

    # Download the zip of the edit.
    link = _wait(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-mixer a.mgs-dl[data-kind='zip']"), "zip"
    )
    link[0].click()
    _wait(
        driver,
        lambda d: (
            [p for p in downloads.iterdir() if p.suffix == ".zip"]
            and not [p for p in downloads.iterdir() if p.suffix == ".crdownload"]
        ),
        "the zip download",
        60,
    )
    zip_path = next(p for p in downloads.iterdir() if p.suffix == ".zip")
    with zipfile.ZipFile(zip_path) as z:
        assert {"bass.wav", "drums.wav", "other.wav", "mix.wav", "stems.json"} <= set(z.namelist())

    # Screenshot: the page rendered (many colours), and nothing came from outside this machine.
    shot = tmp_path / "app.png"
    driver.save_screenshot(str(shot))
    keep = os.environ.get("MGS_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "app.png")
    assert _distinct_colours(shot) > 50
    assert _external_requests(driver) == []


def _open_jam_tab(driver: webdriver.Chrome, server: str) -> None:
    driver.get(server)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-generate"), "the page", 60)
    tab = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']") if b.text.strip() == "Jam"]
    assert tab, "no Jam tab"
    tab[0].click()
    _wait(driver, lambda d: d.find_element(By.ID, "mgs-jam-start").is_displayed(), "the Jam tab", 30)


def test_jam_plays_gaplessly_takes_commands_and_ends_in_a_result(
    server: str, browser: tuple[webdriver.Chrome, Path], tmp_path: Path, clicks
):
    loop = clicks(tmp_path / "drums.wav", 32000, 1.0, 240.0)  # one bar at 240 bpm

    driver, _ = browser
    _open_jam_tab(driver, server)
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-drums input[type='file']").send_keys(str(loop))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-jam-drums audio"), "the upload", 60)
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-bpm input").send_keys("240")
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-prompt textarea").send_keys("funk")
    driver.find_element(By.ID, "mgs-jam-start").click()

    # cycles are scheduled back to back on the audio clock while the jam plays
    _wait(driver, lambda d: d.execute_script("return window.__mgsJam.scheduled") >= 3, "three cycles")
    gapless = driver.execute_script(
        "const j = window.__mgsJam; return [j.ctx.state, j.next - j.ctx.currentTime, j.ctx.currentTime];"
    )
    assert gapless[0] == "running" and gapless[2] > 0 and gapless[1] > 0  # ahead of the clock, no gap
    command = driver.find_element(By.CSS_SELECTOR, "#mgs-jam-command textarea")
    command.send_keys("mute drums")
    driver.find_element(By.ID, "mgs-jam-send").click()
    _wait(driver, lambda d: "next cycle" in d.find_element(By.ID, "mgs-jam-status").text, "the command")
    driver.find_element(By.ID, "mgs-jam-stop").click()
    _wait(driver, lambda d: "Jammed" in d.find_element(By.ID, "mgs-summary").text, "the session")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#mgs-mixer audio")) == 3
    assert driver.find_elements(By.CSS_SELECTOR, "#mgs-mixer a.mgs-dl[data-kind='zip']")
    assert _external_requests(driver) == []


def test_a_page_closed_mid_jam_frees_its_session(
    server: Server, browser: tuple[webdriver.Chrome, Path], tmp_path: Path, clicks
):
    """The page goes away while the jam plays: the server stops the jam, deletes the session's
    folder (nothing written there afterwards) and the model is free for the next page's job."""
    loop = clicks(tmp_path / "drums.wav", 32000, 1.0, 240.0)  # one bar at 240 bpm
    driver, _ = browser
    before = set(server.sessions.iterdir())
    _open_jam_tab(driver, server)
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-drums input[type='file']").send_keys(str(loop))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-jam-drums audio"), "the upload", 60)
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-bpm input").send_keys("240")
    driver.find_element(By.ID, "mgs-jam-start").click()
    _wait(driver, lambda d: d.execute_script("return window.__mgsJam.scheduled") >= 2, "two cycles")
    ours = set(server.sessions.iterdir()) - before
    assert len(ours) == 1, ours  # the jam's session folder

    driver.get("about:blank")  # the page closes mid-jam
    deadline = time.time() + 60
    while any(p.exists() for p in ours) and time.time() < deadline:
        time.sleep(0.25)
    assert not any(p.exists() for p in ours), "the closed page's folder is still there"
    time.sleep(1.0)  # the cycle under way ends
    cpu = server.cpu_seconds()
    time.sleep(3.0)  # a jam still playing would generate a take a second (bpm 240, one bar)
    assert server.cpu_seconds() - cpu < 0.5, "the app kept working for a page that was closed"
    assert set(server.sessions.iterdir()) <= before, "files written for a page that was closed"

    # the model's queue slot is free: the next page's generation runs at once
    driver.get(server)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-generate"), "the page", 60)
    driver.find_element(By.CSS_SELECTOR, "#mgs-prompt textarea").send_keys("drums")
    driver.find_element(By.ID, "mgs-generate").click()
    players = "#mgs-mixer audio"
    _wait(
        driver,
        lambda d: [a for a in d.find_elements(By.CSS_SELECTOR, players) if a.get_attribute("src")],
        "a job",
    )


def test_a_loop_recorded_in_the_browser_is_jammed_on(server: str, browser: tuple[webdriver.Chrome, Path]):
    """The microphone is Chromium's fake capture device, fed from a file of clicks."""
    driver, _ = browser
    driver.get(server)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-generate"), "the page", 60)
    [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']") if b.text.strip() == "Jam"][
        0
    ].click()
    _wait(driver, lambda d: d.find_element(By.ID, "mgs-jam-drums").is_displayed(), "the Jam tab", 30)

    def button(label: str):  # noqa: ANN202
        """The shown button of the drums slot named `label` (None while Gradio re-renders it)."""
        try:
            slot = driver.find_element(By.ID, "mgs-jam-drums")
            for b in slot.find_elements(By.CSS_SELECTOR, "button"):
                if label in ((b.get_attribute("aria-label") or "") + " " + b.text) and b.is_displayed():
                    return b
        except StaleElementReferenceException:
            pass
        return None

    _wait(driver, lambda d: button("Record audio"), "the microphone source", 30).click()
    _wait(driver, lambda d: button("Record"), "the record button", 30).click()
    time.sleep(1.0)  # about 1.5 s recorded: within the test app's 2 s limit
    _wait(driver, lambda d: button("Stop"), "the stop button", 30).click()
    _wait(driver, lambda d: button("Play"), "the recorded loop", 60)
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-bars input").send_keys("1")  # one bar: its tempo follows
    driver.find_element(By.ID, "mgs-jam-start").click()
    _wait(driver, lambda d: d.execute_script("return window.__mgsJam.scheduled") >= 2, "two cycles")
    driver.find_element(By.ID, "mgs-jam-stop").click()
    _wait(driver, lambda d: "Jammed" in d.find_element(By.ID, "mgs-summary").text, "the session")
    assert "bpm" in driver.find_element(By.ID, "mgs-mixer").text


def _onsets(x, sr: int) -> list[float]:  # noqa: ANN001
    """Times (s) where the level first rises over a third of its peak after 0.2 s below it."""
    import numpy as np

    level = np.convolve(np.abs(x), np.ones(32) / 32, mode="same")
    above = level > level.max() / 3
    times, last = [], -1.0
    for i in np.flatnonzero(above[1:] & ~above[:-1]) + 1:
        if i / sr - last > 0.2:
            times.append(i / sr)
        last = i / sr
    return times


def test_playing_along_on_the_microphone_becomes_the_live_stem(
    server: str, browser: tuple[webdriver.Chrome, Path], tmp_path: Path, clicks
):
    """Play along live on 'other': the fake capture device plays clicks at 120 bpm; the page
    records them on the session's clock and sends them in chunks, and the session's `other` is what
    it heard: clicks on their grid (a constant offset: where in the file the capture began), and the
    page says how many chunks it sent and the latency it took off."""
    import numpy as np
    import soundfile as sf

    loop = clicks(tmp_path / "drums.wav", 32000, 1.0, 240.0)  # one bar at 240 bpm: 1 s cycles
    driver, _ = browser
    _open_jam_tab(driver, server)
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-drums input[type='file']").send_keys(str(loop))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#mgs-jam-drums audio"), "the upload", 60)
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-bpm input").send_keys("240")
    driver.find_element(By.CSS_SELECTOR, "#mgs-jam-live input").click()
    option = "li[data-testid='dropdown-option'][aria-label='other']"
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, option), "the live stems", 30)[0].click()
    _wait(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, "#mgs-jam-live input").get_attribute("value") == "other",
        "'other' chosen",
        30,
    )
    driver.find_element(By.ID, "mgs-jam-start").click()
    _wait(driver, lambda d: d.execute_script("return window.__mgsJam.scheduled") >= 4, "four cycles")
    _wait(driver, lambda d: "microphone (other)" in d.find_element(By.ID, "mgs-jam-status").text, "chunks")
    driver.find_element(By.ID, "mgs-jam-stop").click()
    _wait(driver, lambda d: "Jammed" in d.find_element(By.ID, "mgs-summary").text, "the session")
    status = driver.find_element(By.ID, "mgs-jam-status").text
    assert "ms latency compensated" in status and "ignored" not in status, status
    mic = driver.execute_script("return window.__mgsJam.mic")
    assert mic["sent"] >= 8 and mic["latency"] is not None and mic["latency"] >= 0, mic
    src = driver.find_element(By.CSS_SELECTOR, "#mgs-mixer .mgs-track[data-stem='other'] audio")
    x, sr = sf.read(unquote(src.get_attribute("src").split("file=", 1)[1]), always_2d=True)
    x = x.mean(1)
    assert np.abs(x).max() > 0.1, "the live stem is silent"
    onsets = np.array(_onsets(x, sr))
    seconds = len(x) / sr
    assert len(onsets) >= 2 * seconds - 1, (onsets, seconds)  # every 0.5 s, to the last cycle's end
    phase = np.angle(np.exp(2j * np.pi * onsets / 0.5).mean()) / (2 * np.pi) * 0.5  # the offset
    off = (onsets - phase + 0.25) % 0.5 - 0.25  # each onset's distance to the grid
    assert np.abs(off).max() < 0.03, (onsets, off)  # on the clicks' grid, within 30 ms
    # and 0.5 s apart, chunk after chunk: exactly, but for the fake device's own slips (3 ms where
    # its file loops, every 2 s; some ms when a busy machine starves its capture thread)
    assert np.abs(np.diff(onsets) - 0.5).max() < 0.015, onsets
    assert _external_requests(driver) == []
