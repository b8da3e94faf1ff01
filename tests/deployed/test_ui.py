"""What a user does in the Airflow UI, in a real (headless) browser: sign in, find the cdc-sync
DAGs, trigger a pipeline with a param set in its form, watch the run succeed in the grid, read
the load task's summary in its log. Screenshots of every step go to test-artifacts/ui/.

The browser is the distribution's Chromium (Debian: `apt-get install chromium`, or point
CDC_SYNC_CHROMIUM at a Chromium binary), driven by Playwright; Playwright's own browser
download is never used.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.integration.harness import customer, expected_row

pytestmark = [pytest.mark.services, pytest.mark.deployed]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
RUN_TIMEOUT_MS = 300_000  # a run on this busy machine takes ~1 min
UI_TIMEOUT_MS = 60_000  # a page or a panel of the React app to render


def chromium_path() -> str:
    path = os.environ.get("CDC_SYNC_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "no Chromium to drive the Airflow UI: install the distribution's package "
            "(Debian/Ubuntu: `sudo apt-get install chromium`) or set CDC_SYNC_CHROMIUM to a Chromium binary. "
            "Do not run `playwright install`: the tests use the system browser.",
            pytrace=False,
        )
    return path


class Steps:
    """Numbered screenshots: test-artifacts/ui/NN-step.png."""

    def __init__(self, page) -> None:
        self.page, self.count = page, 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()

    def shot(self, step: str) -> None:
        self.count += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.count:02d}-{step}.png"))


def test_trigger_a_pipeline_from_its_form_and_read_the_load_summary_in_the_ui(deployment):
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: run `make venv` (requirements-dev.txt)", pytrace=False)
    browser_binary = chromium_path()
    airflow, world, dag_id = deployment.airflow, deployment.worlds["ui"], deployment.dag_id("ui")

    # the ui pipeline is this test's own; its rows have ids >= 900
    world.dms.insert(world.customers, customer(901))
    world.dms.insert(world.customers, customer(902))
    world.dms.update(world.customers, {"id": 901}, {"name": "renamed in the source"})
    world.dms.flush(world.customers)  # one CDC file, three change rows
    expected = {901: expected_row(customer(901, name="renamed in the source")), 902: expected_row(customer(902))}

    def click_until(target, arrived) -> None:
        """Click a link or button until `arrived()` (an expect) passes. The app re-renders what it
        shows every few seconds while runs are active: a click landing on an element being replaced
        is lost, so click again. Only for clicks that are safe to repeat (they navigate, or open)."""
        deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
        while True:
            try:
                target.click(timeout=10_000)
            except PlaywrightError:
                pass  # covered by what the previous click opened, or replaced: see where we are
            try:
                arrived()
                return
            except (AssertionError, PlaywrightError):
                if time.monotonic() > deadline:
                    raise

    def at(url: str):
        return lambda: expect(page).to_have_url(re.compile(url), timeout=10_000)

    def shows(locator):
        return lambda: expect(locator).to_be_visible(timeout=10_000)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=browser_binary, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        steps = Steps(page)
        try:
            # sign in as the simple auth manager's admin
            page.goto(airflow.url)
            expect(page.get_by_role("button", name="Sign in")).to_be_visible()
            steps.shot("login")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow.password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
            steps.shot("home")

            # the DAG list, filtered by the tag every cdc-sync DAG has, then searched by name
            click_until(page.get_by_role("link", name="Dags", exact=True).first, at(r"/dags(\?|$)"))
            click_until(page.get_by_role("link", name="cdc-sync", exact=True).first, at(r"/dags\?.*tags=cdc-sync"))
            for pipeline in deployment.pipelines:
                name = deployment.dag_id(pipeline["name"].rsplit("_", 1)[0])
                expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
            steps.shot("dags-tagged-cdc-sync")
            page.get_by_role("textbox", name="Search Dags").fill(dag_id)
            expect(page.get_by_role("heading", name=re.compile(r"^1 Dags?$"))).to_be_visible()
            steps.shot("dags-search")

            click_until(page.get_by_role("link", name=dag_id, exact=True), at(rf"/dags/{dag_id}$"))
            expect(page.get_by_role("heading", name=dag_id, exact=True)).to_be_visible()
            steps.shot("dag")

            # the trigger form: every param with its title, description and a fitting widget
            form = page.get_by_role("dialog")
            click_until(
                page.get_by_role("button", name=re.compile(r"^Trigger")).first,
                shows(form.get_by_role("heading", name=f"Trigger Dag - {dag_id}")),
            )
            for title in ("Dry run", "Rescan every folder"):
                expect(form.get_by_role("checkbox", name=title, exact=True)).not_to_be_checked()
            keys = form.get_by_role("textbox", name="Enter each string on a new line")
            expect(keys).to_be_empty()
            keys.fill("dms/x.parquet")  # typed, then cleared: an empty list is a normal run, not a missing value
            keys.fill("")
            expect(form.get_by_role("button", name="Trigger", exact=True)).to_be_enabled()
            for title, description in (
                ("Dry run", "and load nothing"),
                ("Rescan every folder", "List every file under the table folders"),
                ("Replay these object keys", "S3 keys (one per line)"),
                ("Window start (UTC)", "load the files written in [start, end)"),
                ("Window end (UTC)", "End of the window (exclusive)"),
            ):
                field = form.get_by_role("group").filter(has_text=title)
                expect(field).to_contain_text(description)
                if title.startswith("Window"):
                    expect(field.get_by_test_id("datetime-input")).to_have_text("Select date and time")

            # switch on "Rescan every folder" (the checkbox is hidden behind its switch: click the switch)
            rescan = page.get_by_role("checkbox", name="Rescan every folder", exact=True)
            form.locator("label", has=rescan).click()
            expect(rescan).to_be_checked()
            steps.shot("trigger-form")
            form.get_by_role("button", name="Trigger", exact=True).click()

            # the UI opens the new run
            expect(page).to_have_url(re.compile(rf"/dags/{dag_id}/runs/[^/]+$"))
            run_id = unquote(page.url.rsplit("/runs/", 1)[1])
            created = deployment.run(dag_id, run_id)
            assert created["triggered_by"] == "ui" and created["triggering_user_name"] == "admin", created
            conf = dict(created["conf"])
            assert conf.pop("replay_keys") in ([], None), created["conf"]  # cleared: empty either way
            assert conf == {"dry_run": False, "rescan": True, "window_start": None, "window_end": None}, created["conf"]
            steps.shot("run-started")

            # the run page refreshes itself while the run is active
            state = page.get_by_test_id("header-card").get_by_test_id("state-badge")
            expect(state).to_have_text(re.compile("Success|Failed"), timeout=RUN_TIMEOUT_MS)
            steps.shot("run-ended")
            states = deployment.task_states(dag_id, run_id)
            assert deployment.run(dag_id, run_id)["state"] == "success", states
            assert states["load_to_bigquery"] == ["success"] and states["load_to_aurora"] == ["success"], states
            expect(state).to_have_text("Success")

            # the grid: the load task's cell of this run says so too
            cell = page.get_by_test_id(f"grid-{run_id}-load_to_bigquery")
            cell.hover()
            expect(page.get_by_role("tooltip")).to_contain_text("State: Success")
            steps.shot("grid-load-task")
            page.mouse.move(0, 0)  # the tooltip goes

            # the load task (mapped per table) and its log's summary line
            click_until(cell, at(r"/tasks/load_to_bigquery/mapped$"))
            click_until(page.get_by_role("link", name=world.customers, exact=True), at(r"/load_to_bigquery/mapped/0$"))
            summary = page.get_by_text(f"{world.customers} → bigquery: loaded")
            expect(summary).to_be_visible()
            page.get_by_role("button", name="Log Settings").click()
            page.get_by_role("menuitem", name=re.compile(r"^Wrap")).click()  # the whole line in the screenshot
            expect(page.get_by_role("menu", name="Log Settings")).to_be_hidden()
            steps.shot("load-task-log")
            expect(summary).to_have_text(
                re.compile(
                    rf"{re.escape(world.customers)} → bigquery: loaded 1 file\(s\), 3 change row\(s\) "
                    r"\(job [^)]+\); already loaded \d+; quarantined 0"
                )
            )
        except BaseException:
            with contextlib.suppress(PlaywrightError):  # the page as it was, next to the error
                page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()

    # what the run loaded, in both targets (rows of other tests left aside)
    assert {k: v for k, v in world.view_rows().items() if k >= 900} == expected
    assert {k: v for k, v in world.aurora_rows().items() if k >= 900} == expected
    assert {k: v for k, v in world.source_rows(world.customers).items() if k >= 900} == expected
