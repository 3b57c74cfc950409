"""The MLflow UI shows the energy curves the callback logs: a real server, a real headless Chromium."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import MLFlowLogger

from green_mlops.lightning import EnergyCallback
from tests.browser import chromium
from tests.lightning_digits import DigitsMLP, digits_loaders
from tests.mlflow_server import MlflowServer


@pytest.mark.timeout(300)
def test_energy_chart_renders_in_the_run_page(tmp_path):
    from selenium.webdriver.common.by import By

    with MlflowServer(tmp_path / "srv") as server:
        logger = MLFlowLogger(experiment_name="ui", tracking_uri=server.uri)
        train, val = digits_loaders()
        pl.Trainer(max_epochs=2, accelerator="cpu", logger=logger, callbacks=[EnergyCallback(interval=0.05)],
                   enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                   ).fit(DigitsMLP(), train, val)
        url = f"{server.uri}/#/experiments/{logger.experiment_id}/runs/{logger.run_id}/model-metrics"
        with chromium() as browser:
            browser.get(url)
            deadline = time.monotonic() + 60
            search = []
            while time.monotonic() < deadline and not search:  # charts render lazily: filter to ours
                time.sleep(0.5)
                search = browser.find_elements(By.CSS_SELECTOR, "input[placeholder*='Search metric charts']")
            if search:
                search[0].send_keys("energy/total_J")
            legend = lines = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (legend and lines):
                time.sleep(0.5)
                legend = browser.find_elements(By.XPATH, "//*[contains(text(), '(energy/total_J)')]")
                lines = browser.find_elements(By.CSS_SELECTOR, "g.scatterlayer g.trace path.js-line")
            drawn = [p.get_attribute("d") or "" for p in lines]
            shot = tmp_path / "mlflow_energy_chart.png"
            browser.save_screenshot(str(shot))
            if os.environ.get("GREEN_MLOPS_TEST_ARTIFACTS"):
                dest = Path(os.environ["GREEN_MLOPS_TEST_ARTIFACTS"])
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, dest / shot.name)
        assert legend, f"no energy/total_J chart on {url}; see {shot}"
        assert any(len(d) > 20 for d in drawn), f"the chart has no plotted line; see {shot}"
