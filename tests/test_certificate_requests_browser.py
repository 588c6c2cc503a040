"""The approval walked through in a real headless browser (Debian's chromium + chromium-driver, selenium): alice
files a request in admin, bob finds it in the queue and approves it, the request is issued on Pebble, pushed and
served by nginx. Screenshots are kept under var/test-artifacts/certificate-requests/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from certificates.models import CertificateRequest, RequestState
from tests.cert_request_support import CA_ID, PASSWORD, account_for, group_with_policy, name_with_caa, people
from tests.certificates_fleet import Fleet, running_fleet
from worker_project.celery import app as celery_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "certificate-requests"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extras)")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian chromium / chromium-driver are not installed (scripts/test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"chromium cannot start here: {exc.msg}")
    driver.implicitly_wait(5)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def fleet(pebble, nginx_factory, tmp_path: Path) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    with running_fleet(nginx_factory, tmp_path, http_port=pebble.http_port) as running:
        yield running


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    saved = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = saved


def _log_in(driver, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/admin/login/?next=/admin/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    _wait_for(driver, "Log out", f"login of {username}")


def _wait_for(driver, text: str, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    """The click's page has loaded and shows ``text`` (a click does not wait for the navigation)."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(lambda d: text in d.page_source)
    except Exception:
        _shot(driver, f"failed-{what.replace(' ', '-')}")
        raise AssertionError(f"{what}: {text!r} not shown (screenshot kept)") from None


def _shot(driver, name: str) -> Path:  # type: ignore[no-untyped-def]
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_request_then_approve_in_the_browser(browser, live_server, pebble, bind_server,  # type: ignore[no-untyped-def]
                                            fleet: Fleet, eager_tasks) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    issuer = account_for(pebble, bind_server)
    policy = group_with_policy(issuer, bind_server.zone, name="default")
    who = people()
    name = name_with_caa(bind_server, f'0 issue "{CA_ID}"')

    _log_in(driver, live_server.url, who.alice.username)
    driver.get(f"{live_server.url}/admin/certificates/certificaterequest/add/")
    driver.find_element(By.ID, "id_domains_text").send_keys(name)
    Select(driver.find_element(By.ID, "id_group")).select_by_visible_text(policy.group.name)
    Select(driver.find_element(By.ID, "id_issuer")).select_by_visible_text(str(issuer))
    driver.find_element(By.ID, "id_justification").send_keys("Storefront launch on Monday")
    _shot(driver, "1-alice-fills-the-request")
    driver.find_element(By.NAME, "_save").click()
    _wait_for(driver, "Policy and pre-flight", "filing")
    request = CertificateRequest.objects.get(dedupe_key=name)
    assert request.state == RequestState.PENDING, request.error
    assert "no CAA record" in driver.page_source or f"CAA issue allows {CA_ID}" in driver.page_source
    driver.execute_script("document.getElementById('preflight').scrollIntoView()")
    _shot(driver, "2-alice-sees-pending-with-preflight")
    driver.find_element(By.NAME, "_approve").click()  # alice tries to approve her own request
    _wait_for(driver, "cannot approve it", "alice's own approval refused")
    _shot(driver, "3-alice-cannot-approve-her-own")

    _log_in(driver, live_server.url, who.bob.username)
    driver.get(f"{live_server.url}/admin/certificates/certificaterequest/?state__exact=pending")
    assert "Storefront launch on Monday" in driver.page_source
    _shot(driver, "4-bob-sees-the-queue")
    driver.find_element(By.LINK_TEXT, str(request.pk)).click()
    driver.find_element(By.ID, "id_decision_comment").send_keys("Approved for the launch")
    driver.find_element(By.NAME, "_approve").click()  # issuance runs on commit (tasks eager in this test)
    _wait_for(driver, "Issued", "bob's approval", timeout=120)
    request.refresh_from_db()
    assert request.state == RequestState.ISSUED, request.error
    driver.get(f"{live_server.url}/admin/certificates/certificaterequest/{request.pk}/change/")
    assert "Issued" in driver.page_source
    _shot(driver, "5-bob-sees-it-issued")
    fleet.wait_served(name, request.certificate.current_version.serial_hex)
