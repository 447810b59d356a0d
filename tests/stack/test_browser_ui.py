"""The stack's UIs in a real browser (Debian's chromium, driven by playwright).

A tiny model is trained through the stack first (`unetflow train`, which reads the
stack's env file), so the MLflow UI has a champion to show. A failing check keeps a
screenshot under tests/artifacts/ and names it in the failure.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from flows.params import TrainParams
from tests.conftest import REPO
from tests.stack.conftest import StackUnderTest, run_cli

# The first test also pays for the shared stack's start (minutes on a busy machine).
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]

ARTIFACTS = REPO / "tests" / "artifacts"
# As STACK.md: headless as root, no GPU, nothing fetched from outside.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL = "unet-seg"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not on PATH: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        # A persistent context takes the profile folder (--user-data-dir is refused).
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,  # never playwright's own download
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 2000},
        )
        yield context
        context.close()


@contextmanager
def opened(browser, url: str, name: str) -> Iterator:
    """A page at `url`; on failure its screenshot goes to tests/artifacts/NAME.png."""
    page = browser.new_page()
    try:
        # "load", then each test waits for the element it reads: MLflow 3.17's pages keep
        # requests open (its assistant panel polls), so "networkidle" may never come.
        page.goto(url, wait_until="load", timeout=120_000)
        yield page
    except BaseException as err:
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of {url}: {shot}")
        err.add_note(f"screenshot: {shot}")
        raise
    finally:
        page.close()


def _post(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _deployment_id(api: str, flow: str, name: str) -> str:
    # The Python client's listing fails against prefect 3.8's server (STACK.md): REST.
    found = _post(
        f"{api}/deployments/filter",
        {"flows": {"name": {"any_": [flow]}}, "deployments": {"name": {"any_": [name]}}},
    )
    assert len(found) == 1, f"deployment {flow}/{name}: {found}"
    return found[0]["id"]


_PROPERTY = "contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')"


def _form_field(page, label: str):
    """The input area of the run form's property titled `label` (e.g. "Base Channels")."""
    title = f"normalize-space()='{label}' or normalize-space()='{label} (Optional)'"
    xpath = (
        f"//span[contains(@class, 'schema-form-property__label')][{title}]"
        f"/ancestor::div[{_PROPERTY}][1]/div[contains(@class, 'p-label__body')]"
    )
    field = page.locator(f"xpath={xpath}")
    assert field.count() == 1, f"{field.count()} form fields titled {label!r}"
    return field


def _shown_integer(page, label: str) -> int:
    """The value an integer field shows: a number input, or a select of allowed values."""
    field = _form_field(page, label)
    assert field.locator(".schema-form-property-integer").count() == 1, f"{label}: not an integer"
    number = field.locator("input[type=number]")
    if number.count():
        return int(number.input_value())
    return int(field.locator(".p-select-button__value").inner_text())


def test_train_run_form_has_typed_fields_with_the_configured_defaults(
    stack: StackUnderTest, browser
) -> None:
    api = stack.env()["PREFECT_API_URL"]
    deployment = _deployment_id(api, "train", "on-demand")
    config = TrainParams().config  # what a run without changes trains
    expected = {
        "Depth": config.model.depth,  # 3: the project's default, not ModelConfig's 4
        "Base Channels": config.model.base_channels,  # 16, not 32
        "Epochs": config.train.epochs,
        "Num Workers": config.scaling.num_workers,
    }
    url = f"{api.removesuffix('/api')}/deployments/deployment/{deployment}/run"
    with opened(browser, url, "prefect-train-run-form") as page:
        page.get_by_text("Base Channels").first.wait_for(timeout=60_000)
        shown = {label: _shown_integer(page, label) for label in expected}
        assert shown == expected, f"the run form shows {shown}; Python defaults {expected}"


def test_deployment_parameters_tab_lists_each_section_as_a_row(
    stack: StackUnderTest, browser
) -> None:
    """Prefect's Parameters tab has one row per top-level parameter: the config's sections
    (data, model, train, ...) each get theirs, not one JSON value for the whole config."""
    api = stack.env()["PREFECT_API_URL"]
    deployment = _deployment_id(api, "train", "on-demand")
    expected = list(TrainParams().parameters())  # project_dir, name, ..., data, model, ...
    url = f"{api.removesuffix('/api')}/deployments/deployment/{deployment}?tab=Parameters"
    with opened(browser, url, "prefect-train-parameters-tab") as page:
        keys = page.locator(".deployment-parameters-table td.p-table-column--first")
        keys.first.wait_for(timeout=60_000)
        shown = [key.strip() for key in keys.all_inner_texts()]
        assert shown == expected, f"the Parameters tab lists {shown}"
        # Each row shows its own values: the model row holds the default depth only.
        model = page.locator("xpath=//tr[td[1][normalize-space()='model']]").inner_text()
        assert f'"depth": {TrainParams().config.model.depth}' in model, model
        assert '"epochs"' not in model, model  # the train section is a row of its own


@pytest.fixture(scope="module")
def champion(stack: StackUnderTest):
    """Train a tiny model through the stack; returns its (champion) model version.

    No client settings are passed: `unetflow train` must take them from the env file.
    """
    train = run_cli(
        "train",
        "--project-dir",
        str(stack.project),
        "--set",
        "data.path=raw",
        "--set",
        "train.epochs=2",
        "--set",
        "train.batch_size=4",
        "--set",
        "tracking.min_dice=0",  # two epochs learn little: champion whatever the Dice
        "--set",
        # The stack's two Ray nodes run on this one machine: they share its disk.
        "checkpoint.storage_shared=true",
    )
    assert train.returncode == 0, f"{train.stdout[-3000:]}\n{train.stderr[-3000:]}"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.env()["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert f"models:/{MODEL}/{version.version}  (@champion)" in train.stdout
    return client, version


def _best_epoch_metrics(client, run_id: str) -> dict[str, float]:
    """The validation metrics of the epoch the checkpoint was kept from (0-based steps)."""
    best = int(client.get_run(run_id).data.metrics["best_epoch"])
    return {
        name: next(m.value for m in client.get_metric_history(run_id, name) if m.step == best)
        for name in ("val_dice", "val_iou", "val_loss")
    }


def test_model_version_page_shows_champion_and_lineage(
    stack: StackUnderTest, browser, champion
) -> None:
    _, version = champion
    lineage = {k: v for k, v in version.tags.items() if k.startswith("unetflow.")}
    assert {"unetflow.data_version", "unetflow.run_id"} <= set(lineage)
    url = f"{stack.env()['MLFLOW_TRACKING_URI']}/#/models/{MODEL}/versions/{version.version}"
    with opened(browser, url, "mlflow-model-version") as page:
        page.get_by_text("Registered At").first.wait_for(timeout=90_000)
        text = page.inner_text("body")
        assert re.search(r"@\s*champion", text), "no @champion alias on the page"
        for key, value in lineage.items():
            assert key in text and value in text, f"lineage tag {key}={value} not shown"


def _shown_metric(page, name: str) -> float:
    """The value in metric `name`'s row of the logged model's metrics table.

    The table renders only the rows scrolled into view (system/ and train_ ones first),
    so the name is typed into its "Search metrics" box, as a user finds a metric.
    """
    page.get_by_placeholder("Search metrics").fill(name)
    # The search keeps val_dice_per_image too: the row whose first cell is exactly `name`.
    row = page.locator(
        f"xpath=//div[@role='row'][div[@role='cell'][1][normalize-space()='{name}']]"
    )
    row.wait_for(timeout=30_000)
    return float(row.locator("[role=cell]").last.inner_text())


def test_logged_model_page_shows_the_best_epochs_metrics(
    stack: StackUnderTest, browser, champion
) -> None:
    """The version's source model (its "Source Model" link) shows the kept epoch's scores.

    MLflow 3.17's model-version page lists no metrics itself; a user follows the link to
    the logged model, whose page must show the best epoch's metrics, not epoch 0's.
    """
    client, version = champion
    expected = _best_epoch_metrics(client, version.run_id)
    # The run's logged model (the version's "Source Model"), from the run's outputs.
    (output,) = client.get_run(version.run_id).outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    uri = stack.env()["MLFLOW_TRACKING_URI"]
    url = f"{uri}/#/experiments/{model.experiment_id}/models/{model.model_id}"
    with opened(browser, url, "mlflow-logged-model-metrics") as page:
        page.get_by_placeholder("Search metrics").wait_for(timeout=90_000)
        shown = {name: _shown_metric(page, name) for name in expected}
        assert shown == pytest.approx(expected, rel=1e-3, abs=1e-4), (
            f"best epoch's metrics {expected}, page shows {shown}"
        )
