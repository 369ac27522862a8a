"""A real headless Chromium (Debian's chromium and chromium-driver) for tests of HTML pages."""

import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-quic")


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A Selenium-driven headless Chromium; closed at the end of the session."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromedriver (Debian package chromium-driver) is not installed"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def open_page(driver, path):
    """Load a local file and wait until the document and its images have loaded."""
    driver.get(f"file://{path}")
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const pending = [...document.images].filter(img => !img.complete);"
        "Promise.all(pending.map(img => new Promise(r => { img.onload = img.onerror = r; })))"
        ".then(() => done());")


def image_status(driver):
    """(src, loaded) of every image on the page: loaded means decoded with a size."""
    return [(src, bool(ok)) for src, ok in driver.execute_script(
        "return [...document.images].map(img => [img.getAttribute('src'),"
        " img.complete && img.naturalWidth > 0]);")]
