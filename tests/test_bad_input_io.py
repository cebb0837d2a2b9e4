"""Bad input at the edges (issue 24): one test per kind, so that the kinds stay fixed.

- images measured before they are decoded (a 109 KB PNG of 30000x30000 pixels), in the data layer,
  `predict`, `evaluate` and `POST /api/predict` (413);
- outputs never land on inputs, and two sources never share one output name;
- `serve --run` serves the run's pages and the pictures they show, nothing else; security headers;
  same-origin API; the CLI's own Host allow-list;
- a truncated model file, a broken video, a dangling symbolic link: one line naming the file;
- a small fuzz of image bytes into the decoder and the API.
"""

from __future__ import annotations

import json
import logging
import random
import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from fertransfer.classify.predict import whole_image
from fertransfer.data import FER_CLASSES, load_image_folder
from fertransfer.data.images import MAX_PIXELS, ImageTooLarge, UnreadableImage, decode_image, image_size, read_image
from fertransfer.errors import StageError
from fertransfer.expression.cnn import CnnClassifier, CnnConfig, FaceNet
from fertransfer.expression.models import save_classifier
from fertransfer.pipelines.cli import main
from fertransfer.serve.app import create_app
from fertransfer.serve.guard import SECURITY_HEADERS


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit gray PNG of zeros: kilobytes on disk, width x height pixels once decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    rows_per_block = max(1, 4_000_000 // len(row))
    parts, left = [], height
    while left:
        n = min(rows_per_block, left)
        parts.append(packer.compress(row * n))
        left -= n
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is altered to claim width x height."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    """A BMP header (a format read through Pillow's lazy open) claiming width x height, and no pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = png_bomb(30000, 30000)
    assert len(data) < 120_000  # the 109 KB file
    return data


@pytest.fixture(scope="module")
def classifier() -> CnnClassifier:
    """An untrained CNN with FER's classes: what a model costs and answers, without training one."""
    config = CnnConfig(width=8)
    return CnnClassifier(FaceNet(len(FER_CLASSES), 1, config.width, config.dropout).eval(), list(FER_CLASSES), 1, 48,
                         config)


@pytest.fixture(scope="module")
def model_dir(classifier, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    save_classifier(classifier, folder)
    return folder


@pytest.fixture(scope="module")
def client(classifier):
    from starlette.testclient import TestClient

    return TestClient(create_app(classifier, whole_image), base_url="http://127.0.0.1:8000")


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --- 1. images are measured before they are decoded -------------------------------------------


@pytest.mark.parametrize("side", [30000, 14000])
def test_png_bombs_are_refused_from_the_header_without_decoding(side, bomb):
    data = bomb if side == 30000 else png_bomb(side, side)
    assert image_size(data) == (side, side)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as refused:
            decode_image(data, name="bomb.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # decoding 14000x14000 takes 588 MB; the refusal copies nothing of that size
    message = one_line(str(refused.value))
    assert message.startswith("bomb.png: ") and f"{side}x{side} px" in message and f"{MAX_PIXELS:,}" in message


@pytest.mark.parametrize("data, size", [(jpeg_claiming(30000, 20000), (30000, 20000)),
                                        (bmp_claiming(9000, 9000), (9000, 9000)),  # through Pillow's header
                                        (bmp_claiming(20000, 20000), None)])  # over Pillow's own bomb limit
def test_other_formats_are_measured_too(data, size):
    if size:
        assert image_size(data) == size
    with pytest.raises(ImageTooLarge) as refused:
        decode_image(data, name="claims.bin")
    assert one_line(str(refused.value)).startswith("claims.bin: ") and "refused before decoding" in str(refused.value)
    small = cv2.imencode(".jpg", np.full((20, 30, 3), 90, np.uint8))[1].tobytes()
    assert image_size(small) == (30, 20) and decode_image(small).shape == (20, 30, 3)


def test_an_unknown_format_is_refused_not_decoded_blindly():
    with pytest.raises(UnreadableImage, match="mystery.img: not a known image format"):
        decode_image(b"P7 this is no image format Pillow knows\n" + bytes(200), name="mystery.img")


def test_the_data_layer_skips_a_bomb_and_a_dangling_link_naming_them(bomb, tmp_path, caplog):
    folder = tmp_path / "faces"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.full((32, 32, 3), 100, np.uint8))
    (folder / "bomb.png").write_bytes(bomb)
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with caplog.at_level(logging.WARNING):
        images, files = load_image_folder(folder, channels=3)
    assert [Path(f).name for f in files] == ["good.png"] and images.shape == (1, 32, 32, 3)
    warning = one_line(caplog.text)
    assert "bomb.png: 30000x30000 px is over the limit" in warning
    assert "gone.jpg: a symbolic link to a missing file" in warning and "Errno" not in warning
    with pytest.raises(UnreadableImage, match="bomb.png: 30000x30000 px"):
        read_image(folder / "bomb.png")


def test_predict_and_evaluate_refuse_the_bomb_naming_it(bomb, model_dir, tmp_path, capsys, caplog):
    (tmp_path / "bomb.png").write_bytes(bomb)
    assert main(["predict", str(tmp_path / "bomb.png"), "--model", str(model_dir), "--faces",
                 "--out", str(tmp_path / "pred")]) == 1
    err = one_line(capsys.readouterr().err)
    assert "bomb.png: 30000x30000 px is over the limit" in err
    assert not (tmp_path / "pred" / "predictions.csv").exists()

    dataset = tmp_path / "labelled"
    for i, name in enumerate(FER_CLASSES):
        (dataset / name).mkdir(parents=True)
        cv2.imwrite(str(dataset / name / "0.png"), np.full((48, 48), 30 * i, np.uint8))
    (dataset / "happy" / "bomb.png").write_bytes(bomb)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(dataset), "--model", str(model_dir)]) == 0
    assert f"images {len(FER_CLASSES)}," in capsys.readouterr().out
    assert "bomb.png: 30000x30000 px is over the limit" in one_line(caplog.text)


def test_serve_answers_a_bomb_with_413_and_one_line(bomb, client):
    answer = client.post("/api/predict", content=bomb, headers={"Content-Type": "image/png"})
    assert answer.status_code == 413
    assert "30000x30000 px is over the limit" in one_line(answer.json()["error"])
    form = client.post("/api/predict", files={"image": ("bomb.png", png_bomb(14000, 14000), "image/png")})
    assert form.status_code == 413 and "14000x14000 px" in form.json()["error"]
    assert client.get("/api/info").json()["limits"]["max_pixels"] == MAX_PIXELS


# --- 2. outputs never land on inputs ---------------------------------------------------------


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(("a.jpg", "a.png", "b.jpg")):
        cv2.imwrite(str(folder / name), np.full((40, 40, 3), 50 + 60 * i, np.uint8))
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_translate_refuses_its_input_folder_and_keeps_both_a_jpg_and_a_png(photos, tmp_path, capsys):
    from fertransfer.cyclegan.testing import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", image_size=32)
    before = files_of(photos)
    command = ["translate", "--checkpoint", str(ckpt), "--direction", "AtoB", "--device", "cpu"]
    for source, target, words in [(photos, photos, "is the input"), (photos, photos / "out", "is inside the input"),
                                  (photos, tmp_path, "holds the input"), (photos, photos / ".." / "photos", "is the input")]:
        assert main([*command, str(source), str(target)]) == 1
        assert words in one_line(capsys.readouterr().err)
        assert files_of(photos) == before  # nothing of the input was touched
    assert main([*command, str(photos), str(tmp_path / "out")]) == 0
    assert "translated 3 image(s)" in capsys.readouterr().out
    assert sorted(files_of(tmp_path / "out")) == ["a.jpg.png", "a.png", "b.jpg.png"]


def test_predict_and_evaluate_outputs_stay_out_of_their_inputs(photos, model_dir, tmp_path, capsys):
    predict = ["predict", "--model", str(model_dir), "--faces"]
    for out, words in [(photos, "is the input"), (photos / "pred", "is inside the input"),
                       (model_dir, "is the input --model"), (tmp_path, "holds the input")]:
        assert main([*predict, str(photos), "--out", str(out)]) == 1
        assert words in one_line(capsys.readouterr().err)
    out = tmp_path / "pred"
    assert main([*predict, str(photos), "--out", str(out)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a_jpg_annotated.jpg", "a_png_annotated.jpg",
                                                    "b_jpg_annotated.jpg", "predictions.csv"]
    rows = (out / "predictions.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["a.jpg", "a.png", "b.jpg"]  # the outputs are not read back
    # A single photo may have its annotated copy written beside it.
    assert main([*predict, str(photos / "b.jpg"), "--out", str(photos)]) == 0
    assert (photos / "b_jpg_annotated.jpg").is_file()
    capsys.readouterr()

    dataset = tmp_path / "labelled"
    (dataset / "happy").mkdir(parents=True)
    cv2.imwrite(str(dataset / "happy" / "0.png"), np.full((48, 48), 90, np.uint8))
    for out, words in [(dataset / "happy", "is inside the input DATASET"), (model_dir / "eval", "is inside the input --model")]:
        assert main(["evaluate", str(dataset), "--model", str(model_dir), "--out", str(out)]) == 1
        assert words in one_line(capsys.readouterr().err)
    assert not (dataset / "happy" / "evaluation.json").exists()


def test_inspect_and_gallery_write_nothing_into_their_inputs(tmp_path, capsys):
    dataset = tmp_path / "labelled"
    (dataset / "happy").mkdir(parents=True)
    cv2.imwrite(str(dataset / "happy" / "0.png"), np.full((48, 48), 90, np.uint8))
    assert main(["inspect", str(dataset), "--chart", str(dataset / "happy" / "chart.png")]) == 1
    assert "--chart" in one_line(capsys.readouterr().err) and not (dataset / "happy" / "chart.png").exists()
    csv_file = tmp_path / "fer.csv"
    csv_file.write_text("emotion,pixels,Usage\n3," + " ".join(["9"] * 2304) + ",Training\n")
    assert main(["inspect", str(csv_file), "--json", str(csv_file)]) == 1
    assert "is the input PATH" in one_line(capsys.readouterr().err) and csv_file.read_text().startswith("emotion")

    run = tmp_path / "run"
    (run / "augment" / "translated" / "test").mkdir(parents=True)
    assert main(["gallery", str(run), "--out", str(run / "augment" / "translated" / "test")]) == 1
    assert "is inside the input RUN_DIR/augment/translated" in one_line(capsys.readouterr().err)


# --- 3. serve exposes pages, not data --------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run folder with data beside its pages: face crops, sets, a CSV, a model card, manifests."""
    from fertransfer.pipelines.report import write_report

    run = tmp_path_factory.mktemp("served") / "run"
    picture = cv2.imencode(".png", np.full((8, 8, 3), 120, np.uint8))[1].tobytes()
    files = {
        "extract/faces/clip_000001.jpg": picture, "extract/faces.csv": b"file,video\n", "extract/samples.png": picture,
        "augment/sets/real/happy/0.png": picture, "augment/translated/test/happy/0.png": picture,
        "augment/gallery.png": picture, "classify/confusion_real.png": picture,
        "classify/real/model/README.md": b"trained on /home/someone/data", "classify/real/model/cnn.pt": b"weights",
        "classify/report.md": b"# results", "classify/metrics.json": b"{}", ".input-digests.json": b"{}",
    }
    for name, data in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)
    for stage in ("extract", "classify"):
        (run / stage / "manifest.json").write_text(json.dumps(
            {"description": stage, "timings": {"finished": "now", "seconds": 1.0}, "outputs": {"count": 1}}))
    (run / "augment" / "gallery.html").write_text("<html><body><img src='data:image/png;base64,AAAA'>"
                                                  "<a href='gallery.png'>gallery.png</a>"
                                                  "<a href='sets/real/happy/../../../../outside.png'>x</a></body></html>")
    (run.parent / "outside.png").write_bytes(picture)
    write_report(run)
    return run


def test_serve_run_serves_the_pages_and_their_pictures_only(classifier, run_folder):
    from starlette.testclient import TestClient

    client = TestClient(create_app(classifier, whole_image, run_dir=run_folder), base_url="http://127.0.0.1:8000")
    served = ["report.html", "augment/gallery.html", "augment/gallery.png", "extract/samples.png",
              "classify/confusion_real.png", "classify/report.md"]
    for name in served:
        assert client.get(f"/run/{name}").status_code == 200, name
    hidden = ["extract/faces/clip_000001.jpg", "extract/faces.csv", "augment/sets/real/happy/0.png",
              "augment/translated/test/happy/0.png", "classify/real/model/README.md", "classify/real/model/cnn.pt",
              "classify/metrics.json", "classify/manifest.json", "extract/manifest.json", ".input-digests.json",
              "../outside.png", "%2e%2e/outside.png", "extract/faces/", "extract/"]
    for name in hidden:
        assert client.get(f"/run/{name}").status_code == 404, name
    for answer in (client.get("/"), client.get("/app.js"), client.get("/run/report.html"), client.get("/run/nothing"),
                   client.get("/api/info"), client.post("/api/predict", content=b"junk")):
        for header, value in SECURITY_HEADERS.items():
            assert answer.headers.get(header) == value, (answer.request.url, header)


def test_the_api_answers_only_its_own_page(client):
    image = cv2.imencode(".png", np.full((60, 60, 3), 128, np.uint8))[1].tobytes()
    own = {"Origin": "http://127.0.0.1:8000"}
    assert client.post("/api/predict", content=image, headers=own).status_code == 200
    assert client.post("/api/predict", content=image).status_code == 200  # curl: no Origin header
    for origin in ("http://attacker.example", "null", "http://127.0.0.1:8001", "https://127.0.0.1:8000"):
        for content_type in ("text/plain", "image/png"):
            answer = client.post("/api/predict", content=image, headers={"Origin": origin, "Content-Type": content_type})
            assert answer.status_code == 403 and "not from this server's own page" in answer.json()["error"]
    assert client.get("/api/info", headers={"Origin": "http://attacker.example"}).status_code == 403
    assert client.get("/", headers={"Origin": "http://attacker.example"}).status_code == 200  # a page, read-only


def test_the_commands_own_defaults_answer_only_its_host_names(model_dir, tmp_path, capsys, monkeypatch):
    import uvicorn
    from starlette.testclient import TestClient

    served = []

    def fake_run(self, sockets=None):
        served.append((self.config.app, sockets[0].getsockname()[1]))
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    # MTCNN is not what is tested here: the whole picture stands in for it (loading it costs seconds).
    monkeypatch.setattr("fertransfer.classify.predict.FaceDetector", lambda **options: whole_image)
    assert main(["serve", "--model", str(model_dir), "--port", "0", "--min-face-size", "200"]) == 0
    app, port = served[-1]
    for base, status in [(f"http://127.0.0.1:{port}", 200), (f"http://localhost:{port}", 200),
                         (f"http://[::1]:{port}", 200), (f"http://attacker.example:{port}", 400),
                         (f"http://127.0.0.1:{port + 1}", 400), ("http://localhost", 400)]:
        assert TestClient(app, base_url=base).get("/api/info").status_code == status, base
    capsys.readouterr()

    assert main(["serve", "--model", str(model_dir), "--port", "0", "--min-face-size", "200", "--host", "0.0.0.0",
                 "--allowed-host", "lab-pc.local"]) == 0
    app, port = served[-1]
    assert TestClient(app, base_url=f"http://lab-pc.local:{port}").get("/api/info").status_code == 200
    assert TestClient(app, base_url=f"http://attacker.example:{port}").get("/api/info").status_code == 400
    assert "--allowed-host" not in capsys.readouterr().err  # named: no warning about it
    assert main(["serve", "--model", str(model_dir), "--port", "0", "--min-face-size", "200", "--host", "0.0.0.0"]) == 0
    app, port = served[-1]
    assert TestClient(app, base_url=f"http://192.0.2.7:{port}").get("/api/info").status_code == 400
    assert "pass --allowed-host" in capsys.readouterr().err


# --- 4. damaged files at the edges ------------------------------------------------------------


def test_a_truncated_model_file_is_one_line_naming_it(model_dir, photos, tmp_path, capsys, monkeypatch):
    import shutil

    import uvicorn

    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    weights = damaged / "cnn.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: pytest.fail("served a damaged model"))
    for argv in (["predict", str(photos), "--model", str(damaged), "--faces", "--out", str(tmp_path / "pred")],
                 ["evaluate", str(photos), "--model", str(damaged)],
                 ["serve", "--model", str(damaged), "--port", "0"]):
        assert main(argv) == 1
        err = one_line(capsys.readouterr().err)
        assert f"{weights}: unreadable model weights" in err and "Errno" not in err


def test_predict_on_a_broken_video_is_one_line_and_leaves_nothing(demo_video, model_dir, tmp_path, capsys, caplog):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(demo_video.read_bytes()[:4000])
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(random.Random(0).randbytes(5000))
    for video in (truncated, noise):
        out = tmp_path / f"out_{video.stem}"
        with caplog.at_level(logging.INFO):
            assert main(["predict", str(video), "--model", str(model_dir), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert one_line(err).startswith(f"error: {video}: cannot read the video (")
        assert not out.exists() or not any(out.iterdir())  # no header-only predictions.csv
        assert "ffmpeg version" not in caplog.text  # ffmpeg's banner only at debug


# --- 5. a small fuzz of image bytes -----------------------------------------------------------


def mutations(count: int, seed: int = 0) -> list[bytes]:
    """Valid small PNGs and JPEGs cut short, with bytes flipped or with garbage: `count` of them."""
    rng = random.Random(seed)
    picture = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    valid = [cv2.imencode(ext, picture)[1].tobytes() for ext in (".png", ".jpg", ".bmp")]
    cases = []
    for i in range(count):
        data = bytearray(rng.choice(valid))
        kind = i % 4
        if kind == 0:
            data = data[: rng.randrange(1, len(data))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 2:
            data = data[:24] + bytearray(rng.randbytes(rng.randrange(0, 400)))
        else:
            data = bytearray(rng.randbytes(rng.randrange(0, 300)))
        cases.append(bytes(data))
    return cases


def test_fuzzed_image_bytes_decode_or_give_one_clean_line():
    outcomes = {"decoded": 0, "refused": 0}
    for i, data in enumerate(mutations(300)):
        try:
            image = decode_image(data, name=f"case{i}")
        except UnreadableImage as error:
            assert one_line(str(error)).startswith(f"case{i}: ")
            outcomes["refused"] += 1
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            outcomes["decoded"] += 1
    assert outcomes["refused"] >= 150 and sum(outcomes.values()) == 300


def test_fuzzed_uploads_get_a_clean_answer(client):
    for data in mutations(60, seed=1):
        answer = client.post("/api/predict", content=data, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code in (200, 400, 413), answer.status_code
        if answer.status_code != 200:
            one_line(answer.json()["error"])


def test_videos_are_measured_before_their_frames_are_decoded(demo_video):
    from fertransfer.classify.predict import open_video
    from fertransfer.extract.video import VideoError
    from fertransfer.extract.video import open_video as open_capture

    with pytest.raises(StageError, match=r"lecture.mp4: frames of \d+x\d+ px are over the limit of 1,000 pixels"):
        open_video(demo_video, max_pixels=1000)
    with pytest.raises(VideoError, match=r"frames of \d+x\d+ px are over the limit of 1,000 pixels"):
        open_capture(str(demo_video), max_pixels=1000)
    reader, fps = open_video(demo_video)
    reader.close()
    capture, info = open_capture(str(demo_video))
    capture.release()
    assert fps > 0 and info.width * info.height <= MAX_PIXELS


def test_a_dangling_link_in_an_input_folder_leaves_the_fingerprint_working(tmp_path, caplog):
    from fertransfer.pipelines.runner import content_fingerprint, stat_fingerprint

    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "good.png").write_bytes(b"image bytes")
    before = (stat_fingerprint(folder), content_fingerprint(folder))
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with caplog.at_level(logging.WARNING):
        after = (stat_fingerprint(folder), content_fingerprint(folder))
    assert after == before  # the broken link has no content: the input is what it was
    assert "gone.jpg: a broken link, left out of the input's fingerprint" in caplog.text
