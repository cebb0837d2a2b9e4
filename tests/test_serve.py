"""`pipeline serve`: the JSON API through Starlette's TestClient, the command's checks, and the
page in headless Chromium with a fake camera playing the demo portrait."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertransfer.classify.predict import FaceDetector, load_checked_classifier, predict_image
from fertransfer.data import FER_CLASSES
from fertransfer.demo.video import webcam_frame, write_y4m
from fertransfer.pipelines.cli import main
from fertransfer.pipelines.config import default_config_text, load_config
from fertransfer.pipelines.report import write_report
from fertransfer.pipelines.runner import run_stage
from fertransfer.serve.app import create_app

TINY = {"epochs": 1, "width": 8, "batch_size": 32, "patience": 0, "tta": "flip"}


@pytest.fixture(scope="module")
def run_dir(smileys, tmp_path_factory) -> Path:
    """A run folder with a classify stage (cnn, one epoch on the smileys) and its report page."""
    folder = tmp_path_factory.mktemp("serve_run")
    config = folder / "pipeline.toml"
    config.write_text(default_config_text({"run": {"dir": "run", "device": "cpu"},
                                           "data": {"fer": str(smileys)}, "classify": TINY}))
    assert run_stage(load_config(config), "classify").state == "done"
    write_report(folder / "run")
    return folder / "run"


@pytest.fixture(scope="module")
def model(run_dir) -> Path:
    return run_dir / "classify"


@pytest.fixture(scope="module")
def parts(model):
    return load_checked_classifier(model), FaceDetector(min_size=80)


@pytest.fixture(scope="module")
def client(parts, run_dir):
    from starlette.testclient import TestClient

    return TestClient(create_app(*parts, run_dir=run_dir))


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_predict_finds_the_face_as_pipeline_predict_does(client, parts):
    frame = webcam_frame()
    answer = client.post("/api/predict", content=jpeg(frame), headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 200
    result = answer.json()
    assert (result["width"], result["height"]) == (640, 480) and result["ms"] > 0 and result["notes"] == []
    [face] = result["faces"]
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480 and x2 - x1 > 80
    assert list(face["probabilities"]) == list(FER_CLASSES)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    # The same function `pipeline predict` uses, on the same decoded pixels, gives the same answer.
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg(frame), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    [direct] = predict_image(parts[0], decoded, parts[1])
    assert face["box"] == list(direct.box) and face["label"] == FER_CLASSES[direct.label]
    np.testing.assert_allclose(list(face["probabilities"].values()), direct.probabilities, atol=1e-4)


def test_multipart_upload_and_no_face(client):
    frame = webcam_frame()
    answer = client.post("/api/predict", files={"image": ("me.jpg", jpeg(frame), "image/jpeg")})
    assert answer.status_code == 200 and len(answer.json()["faces"]) == 1
    blank = client.post("/api/predict", files={"image": ("wall.png", cv2.imencode(".png", np.full((240, 320, 3), 200, np.uint8))[1].tobytes(), "image/png")})
    assert blank.status_code == 200 and blank.json()["faces"] == []


def test_bad_uploads_get_a_one_line_reason(client, parts, run_dir):
    from starlette.testclient import TestClient

    for body, status, words in [(b"hello, not an image", 400, "not an image"), (b"", 400, "empty upload")]:
        answer = client.post("/api/predict", content=body, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == status and words in answer.json()["error"] and "\n" not in answer.json()["error"]
    form = client.post("/api/predict", files={"note": (None, "no file")})
    assert form.status_code == 400 and "form field 'image'" in form.json()["error"]
    small = TestClient(create_app(*parts, max_bytes=10_000))
    big = jpeg(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    assert len(big) > 10_000
    for answer in (small.post("/api/predict", content=big), small.post("/api/predict", files={"image": ("x.jpg", big)})):
        assert answer.status_code == 413 and "limit" in answer.json()["error"]


def test_large_images_are_downscaled_and_boxes_kept_in_their_pixels(parts):
    from starlette.testclient import TestClient

    frame = webcam_frame(1280, 960)
    full = TestClient(create_app(*parts)).post("/api/predict", content=jpeg(frame)).json()
    small = TestClient(create_app(*parts, max_side=640)).post("/api/predict", content=jpeg(frame)).json()
    assert (small["width"], small["height"]) == (1280, 960)
    assert "downscaled from 1280x960 to 640x480" in small["notes"][0]
    assert np.abs(np.array(small["faces"][0]["box"]) - full["faces"][0]["box"]).max() < 12


def test_page_info_and_run_files_read_only(client, run_dir):
    page = client.get("/")
    assert page.status_code == 200 and "camera-start" in page.text and 'src="app.js"' in page.text
    assert "getUserMedia" in client.get("/app.js").text
    info = client.get("/api/info").json()
    assert info["classes"] == list(FER_CLASSES) and info["run"] == {"report": "/run/report.html"}
    assert "fertransfer run report" in client.get("/run/report.html").text
    assert client.get("/run/classify/confusion_real.png").status_code == 200  # a picture the report shows
    assert client.get("/run/classify/real/model/cnn.pt").status_code == 404  # models are not served
    assert client.get("/run/classify/manifest.json").status_code == 404
    assert client.post("/run/report.html").status_code == 405
    assert client.get("/run/../pipeline.toml").status_code == 404


def test_only_loopback_host_names_are_answered_by_default(parts):
    from starlette.testclient import TestClient

    app = create_app(*parts, allowed_hosts=["127.0.0.1", "localhost"], port=8000)  # a bare name means the served port
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://attacker.example").get("/api/info").status_code == 400


def test_command_refuses_bad_models_and_warns_off_loopback(model, smileys, tmp_path, capsys, monkeypatch):
    import uvicorn

    served = []

    def fake_run(self, sockets=None):
        served.append(sockets[0].getsockname())
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["serve", "--model", str(model), "--classes", "happy", "sad"]) == 1
    err = capsys.readouterr().err
    assert "trained on the classes" in err and err.strip().count("\n") == 0
    assert main(["serve", "--model", str(model), "--run", str(tmp_path / "no_run")]) == 1
    assert "no such run folder" in capsys.readouterr().err
    assert main(["serve", "--model", str(model), "--threads", "-1"]) == 1
    assert "--threads must be" in capsys.readouterr().err
    assert served == []
    assert main(["serve", "--model", str(model), "--host", "0.0.0.0", "--port", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: serving on 0.0.0.0, not loopback") and len(served) == 1
    assert "http://0.0.0.0:" in captured.out
    assert main(["serve", "--model", str(model), "--port", "0"]) == 0
    assert capsys.readouterr().err == "" and served[-1][0] == "127.0.0.1"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--model", str(model), "--port", str(busy.getsockname()[1])]) == 1
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


# --- the page in a real browser ---------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def server(parts, run_dir):
    """The app served by uvicorn on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    from fertransfer.serve.cli import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(*parts, run_dir=run_dir), log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium whose camera plays a y4m video of the demo portrait (webcam framing)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    frame = webcam_frame()
    video = write_y4m(tmp_path / "camera.y4m", [np.roll(frame, shift, axis=1) for shift in (0, 2, 4, 2)])
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,900",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-video-capture={video}", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 90):
    """The first truthy value of a JavaScript expression, polled until the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {script}; page status: "
                         f"{driver.execute_script('return document.body.innerText')[:500]}")


# The boxes drawn on the camera overlay, and the overlay's pixel at the middle of the first one's left edge.
DRAWN = """(() => { const c = document.getElementById('camera-overlay'); if (!c.dataset.boxes) return null;
  const boxes = JSON.parse(c.dataset.boxes); if (!boxes.length) return null; const [x1, y1, x2, y2] = boxes[0];
  return [boxes, Array.from(c.getContext('2d').getImageData(x1, Math.round((y1 + y2) / 2), 1, 1).data)]; })()"""


@pytest.mark.browser
def test_page_shows_boxes_and_labels_from_the_camera_and_photos(browser, server, tmp_path):
    browser.get(server)
    wait_for(browser, "document.getElementById('model').textContent.startsWith('Model: cnn')", 30)
    assert "run report" in browser.find_element("id", "run-links").text
    browser.find_element("id", "camera-start").click()
    label = wait_for(browser, "document.querySelector('#camera-faces .face .label')?.textContent")
    assert label in FER_CLASSES
    assert len(browser.find_elements("css selector", "#camera-faces .face .bar-row")) == len(FER_CLASSES)
    status = browser.find_element("id", "camera-status").text
    assert status.startswith("1 face (640x480 px") and "ms on the server" in status
    # The box is drawn: one box, and the overlay is green on its left edge.
    boxes, (r, g, b, a) = wait_for(browser, DRAWN, 10)
    assert len(boxes) == 1 and boxes[0][2] - boxes[0][0] > 80
    assert a > 200 and g > 120 and r < 80 and b < 100, (r, g, b, a)
    if os.environ.get("SERVE_SCREENSHOT"):
        save_screenshot(browser, Path(os.environ["SERVE_SCREENSHOT"]))

    # A photo: the portrait finds a face; a blank wall says no face; a text file is refused.
    photo_input = browser.find_element("id", "photo-input")
    cases = [("portrait.jpg", jpeg(webcam_frame()), "#photo-faces .face .label", None),
             ("wall.png", cv2.imencode(".png", np.full((240, 320, 3), 200, np.uint8))[1].tobytes(), None, "No face found"),
             ("notes.jpg", b"not an image at all", None, "Refused: not an image")]
    for name, data, selector, words in cases:
        path = tmp_path / name
        path.write_bytes(data)
        photo_input.send_keys(str(path))
        if selector:
            assert wait_for(browser, f"document.querySelector('{selector}')?.textContent", 60) in FER_CLASSES
            # The preview is a blob: URL, which the Content-Security-Policy must let the page show.
            assert wait_for(browser, "document.getElementById('photo-image').naturalWidth", 10) == 640
        else:
            wait_for(browser, f"document.getElementById('photo-status').textContent.includes('{words}')", 60)
    browser.find_element("id", "camera-stop").click()
    assert browser.find_element("id", "camera-status").text == "The camera is off."


def save_screenshot(driver, path: Path) -> None:
    """The page as PNG, at half size for the README (pictures in docs/ stay small)."""
    shot = cv2.imdecode(np.frombuffer(driver.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
    height = driver.execute_script("return document.getElementById('camera-video').closest('.row').getBoundingClientRect().bottom + 16")
    shot = shot[: min(shot.shape[0], int(height))]
    small = cv2.resize(shot, (shot.shape[1] * 2 // 3, shot.shape[0] * 2 // 3), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
