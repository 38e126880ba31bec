"""The page in a real browser: headless Chromium driven by selenium.

Skipped, with the reason, where selenium or Chromium and its driver are not
installed (.ci/run installs the Debian packages chromium and chromium-driver).
Set FUNCNET_PLAYGROUND_SCREENSHOT=path to keep the screenshot (docs/playground-serve.png).
"""

import os
import shutil
import threading
import time

import numpy as np
import pytest

from funcnet._src.playground.server import PlaygroundHTTPServer
from funcnet.playground import PlaygroundConfig

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,  # about 30 s: a browser, a server and a training run
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="no Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)",
    ),
]

ORANGE, BLUE = (245, 147, 34), (8, 119, 189)


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"within {seconds} s: {what}")


@pytest.fixture(scope="module")
def browser():
    server = PlaygroundHTTPServer(0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver, server
    driver.quit()
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_default_link_trains_live_and_the_link_follows_the_controls(browser, tmp_path):
    driver, server = browser
    driver.get(f"{server.url}#{PlaygroundConfig().to_fragment()}")
    wait_for(
        lambda: driver.execute_script("return document.body.dataset.ready"), 60, "the page starts"
    )
    epoch = lambda: int(driver.find_element(By.ID, "iter-number").text.replace(",", ""))  # noqa: E731
    test_loss = lambda: float(driver.find_element(By.ID, "loss-test").text)  # noqa: E731
    assert epoch() == 0 and test_loss() > 0.3  # the loss at epoch 0, before training
    # One picture per feature and per neuron, links with their weight on hover.
    assert len(driver.find_elements(By.CSS_SELECTOR, ".neuron canvas")) == 6
    links = driver.find_elements(By.CSS_SELECTOR, "#links path")
    assert len(links) == 2 * 4 + 4 * 2 + 2
    assert (
        links[0]
        .find_element(By.TAG_NAME, "title")
        .get_attribute("textContent")
        .startswith("Weight is ")
    )

    driver.find_element(By.ID, "play-pause-button").click()
    wait_for(lambda: epoch() > 0, 30, "the epoch counter advances")
    drawn = driver.execute_script("return window.playgroundFramesDrawn")
    start = time.monotonic()
    wait_for(lambda: test_loss() < 0.05, 60, "the test loss falls below 0.05")
    seconds = time.monotonic() - start
    rate = (driver.execute_script("return window.playgroundFramesDrawn") - drawn) / seconds
    print(f"picture updates per second in the browser: {rate:.1f}, epoch {epoch()}")
    # The default link shows the test points; the checkbox and the link agree.
    assert driver.find_element(By.ID, "show-test-data").is_selected()
    driver.find_element(By.ID, "show-test-data").click()
    assert "showTestData=false" in driver.current_url
    driver.find_element(By.ID, "show-test-data").click()
    assert "showTestData=true" in driver.current_url
    screenshot = os.environ.get("FUNCNET_PLAYGROUND_SCREENSHOT") or str(tmp_path / "page.png")
    driver.find_element(By.ID, "play-pause-button").click()  # pause, for a still picture
    time.sleep(0.3)
    driver.save_screenshot(screenshot)
    Image = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).reshape(-1, 3)
    for colour in (ORANGE, BLUE):  # the points' own colours, -1 and +1
        assert np.sum(np.all(pixels == colour, axis=1)) > 50, colour

    # Controls change the experiment and the link follows, in the Playground's format.
    driver.find_element(By.CSS_SELECTOR, '#datasets button[data-dataset="xor"]').click()
    wait_for(
        lambda: "dataset=xor" in driver.current_url and epoch() == 0, 30, "dataset=xor in the link"
    )
    driver.find_element(By.CSS_SELECTOR, ".hidden-layer .add-neuron").click()
    wait_for(lambda: "networkShape=5,2" in driver.current_url, 30, "networkShape=5,2 in the link")
    wait_for(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, ".neuron canvas")) == 7,
        10,
        "7 neurons drawn",
    )
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None


def test_a_site_link_hides_the_controls_it_hides(browser):
    driver, server = browser
    driver.get(f"{server.url}#dataset=xor&seed=0.59680&x_hide=true&noise_hide=true")
    wait_for(
        lambda: driver.execute_script("return document.body.dataset.ready"), 60, "the page starts"
    )
    wait_for(lambda: "dataset=xor" in driver.current_url, 30, "the link's settings")
    assert "seed=0.59680" in driver.current_url and "x_hide=true" in driver.current_url
    assert not driver.find_element(By.CSS_SELECTOR, '.feature[data-feature="x"]').is_displayed()
    assert driver.find_element(By.CSS_SELECTOR, '.feature[data-feature="y"]').is_displayed()
    assert not driver.find_element(By.ID, "noise").is_displayed()
    assert driver.find_element(By.ID, "batchSize").is_displayed()
