"""A real browser on the real UI: `bitnas ui` on loopback over a searched study, the experiment's
runs page opened in headless Chromium (Debian's `chromium`), the study run listed, its trial runs
listed once expanded, and the Pareto artefacts reachable from the run's page and over HTTP.

Chromium is driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no extra package is needed.
Run by hand (`BITNAS_SCREENSHOT=results/mlflow_study_page.png`), it keeps a screenshot.
The second UI, optuna-dashboard over the study's journal, is checked through its HTTP API.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bitnas.search.tracking import tracking_uri
from servers import free_port, stop_session, wait_until_healthy
from conftest import SHARED_STUDY as STUDY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900"]
EXPAND_CHILD_RUNS = "runnamecellrenderer"  # the run-name cell's expander button (its data-component-id)


class Browser:
    """Headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path):
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def wire_pipes():  # the browser reads commands on fd 3 and writes answers on fd 4
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.process = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                         "--remote-debugging-pipe", "about:blank"], preexec_fn=wire_pipes,
                                        pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer, self._next_id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for_text(self, *needles: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if all(needle in text for needle in needles):
                return text
            time.sleep(0.5)
        raise AssertionError(f"page never showed {needles}; it shows: {text[:1500]!r}")

    def wait_until(self, expression: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"page never satisfied {expression!r}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture
def ui(finished_study, tmp_path):
    results = finished_study
    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    server = subprocess.Popen(["bitnas", "ui", "--results", str(results), "--port", str(port)], stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, tmp_path / "ui.log", "bitnas ui")
        assert f"MLflow UI for {results / 'mlflow.db'}: {url}" in (tmp_path / "ui.log").read_text()
        yield results, url
    finally:
        stop_session(server)  # the command and the MLflow server it started
        log.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package)")
def test_the_study_page_lists_the_study_and_trial_runs_and_the_pareto_artefacts(ui, tmp_path):
    results, url = ui
    client = MlflowClient(tracking_uri(results))
    experiment = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    study_run = next(r for r in runs if r.data.tags.get("bitnas.role") == "study")
    trials = sorted(r.info.run_name for r in runs if r.data.tags.get("bitnas.role") == "trial")
    assert trials

    # The artefact over plain HTTP, as the UI fetches it.
    with urllib.request.urlopen(f"{url}/get-artifact?path=pareto.html&run_uuid={study_run.info.run_id}",
                                timeout=30) as answer:
        assert answer.status == 200 and b"plotly" in answer.read()

    browser = Browser(tmp_path / "profile")
    try:
        browser.open(f"{url}/#/experiments/{experiment.experiment_id}/runs")
        browser.wait_for_text(STUDY, f"{len(runs)} matching runs")
        # The trial runs are nested under the study run: expand it.
        expanders = f"""[...document.querySelectorAll('button[data-component-id*="{EXPAND_CHILD_RUNS}"]')]"""
        browser.wait_until(f"{expanders}.length > 0")
        browser.evaluate(f"{expanders}.forEach(b => b.click())")
        browser.wait_for_text(*trials)
        shot = os.environ.get("BITNAS_SCREENSHOT")
        browser.screenshot(Path(shot) if shot else tmp_path / "study_page.png")

        browser.open(f"{url}/#/experiments/{experiment.experiment_id}/runs/{study_run.info.run_id}/artifacts")
        browser.wait_for_text("pareto.png", "pareto.html", "trials.csv")
    finally:
        browser.close()


def test_optuna_dashboard_lists_the_study_with_its_objective_names(finished_study, tmp_path):
    """The README's second UI: `optuna-dashboard <results>/optuna.journal` reads a bitnas study as
    it is, with its three directions and the objective names the driver set."""
    port = free_port()
    journal = finished_study / "optuna.journal"
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen(["optuna-dashboard", str(journal), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, tmp_path / "dashboard.log", "optuna-dashboard", path="/api/meta")
        with urllib.request.urlopen(f"{url}/api/studies", timeout=10) as answer:
            studies = json.load(answer)["study_summaries"]
        study = next(s for s in studies if s["study_name"] == STUDY)
        assert study["directions"] == ["maximize", "minimize", "minimize"]
        with urllib.request.urlopen(f"{url}/api/studies/{study['study_id']}", timeout=30) as answer:
            detail = json.load(answer)
        assert detail["objective_names"] == ["accuracy", "latency_ms", "energy_uj"]
        assert len(detail["trials"]) == len([t for t in detail["trials"] if t["state"] == "Complete"]) > 0
    finally:
        stop_session(server)
        log.close()
