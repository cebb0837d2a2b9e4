// The page of `pipeline serve`: camera frames and photos go to POST /api/predict, and each
// face that comes back is drawn as a box with its top label, plus a bar per class beside it.
"use strict";

const FRAMES_PER_SECOND = 4;  // at most; a frame is only sent when the previous answer is in
const FRAME_WIDTH = 640;      // camera frames are sent at this width at most (JPEG)
const $ = (id) => document.getElementById(id);
let classes = [];

function setStatus(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function percent(p) { return `${Math.round(p * 100)}%`; }

// Boxes and top labels on a canvas laid over the picture, in the picture's pixels.
function drawBoxes(canvas, result) {
  canvas.width = result.width;
  canvas.height = result.height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const line = Math.max(2, Math.round(result.width / 320));
  ctx.font = `${Math.max(14, Math.round(result.width / 32))}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  for (const face of result.faces) {
    const [x1, y1, x2, y2] = face.box;
    ctx.strokeStyle = "#1a9e3a";
    ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${face.label} ${percent(face.probabilities[face.label])}`;
    const height = parseInt(ctx.font, 10) + 6;
    const top = y1 - height >= 0 ? y1 - height : y1;
    ctx.fillStyle = "#1a9e3a";
    ctx.fillRect(x1 - line / 2, top, ctx.measureText(text).width + 10, height);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x1 + 4, top + height - 3);
  }
  canvas.dataset.boxes = JSON.stringify(result.faces.map((face) => face.box));  // what is drawn, for tests
}

// One card per face: its top label and a bar for every class, in the model's class order.
function renderFaces(container, result) {
  container.replaceChildren();
  result.faces.forEach((face, i) => {
    const card = document.createElement("div");
    card.className = "face";
    const title = document.createElement("div");
    title.className = "face-title";
    title.append(`Face ${i + 1}: `);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = face.label;
    title.append(label, ` ${percent(face.probabilities[face.label])}`);
    card.append(title);
    for (const name of classes.length ? classes : Object.keys(face.probabilities)) {
      const p = face.probabilities[name] ?? 0;
      const row = document.createElement("div");
      row.className = name === face.label ? "bar-row top" : "bar-row";
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = percent(p);
      bar.append(fill);
      const nameEl = document.createElement("span");
      nameEl.textContent = name;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = percent(p);
      row.append(nameEl, bar, value);
      card.append(row);
    }
    container.append(card);
  });
}

function describe(result) {
  const found = result.faces.length === 0 ? "No face found"
    : `${result.faces.length} face${result.faces.length > 1 ? "s" : ""}`;
  return [`${found} (${result.width}x${result.height} px, ${result.ms} ms on the server)`, ...result.notes].join(". ");
}

// POST one image; resolves to the JSON answer, or throws an Error with the server's one-line reason.
async function predict(body, headers = {}) {
  const response = await fetch("api/predict", { method: "POST", body, headers });
  let answer;
  try { answer = await response.json(); } catch { answer = {}; }
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

// --- camera ---------------------------------------------------------------------------
const camera = { stream: null, timer: null, busy: false, grab: document.createElement("canvas") };

async function sendFrame() {
  const video = $("camera-video");
  if (camera.busy || !camera.stream || video.readyState < 2 || !video.videoWidth) return;
  camera.busy = true;
  try {
    const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
    camera.grab.width = Math.round(video.videoWidth * scale);
    camera.grab.height = Math.round(video.videoHeight * scale);
    camera.grab.getContext("2d").drawImage(video, 0, 0, camera.grab.width, camera.grab.height);
    const blob = await new Promise((resolve) => camera.grab.toBlob(resolve, "image/jpeg", 0.85));
    const result = await predict(blob, { "Content-Type": "image/jpeg" });
    if (!camera.stream) return;  // stopped while the answer was on its way
    drawBoxes($("camera-overlay"), result);
    renderFaces($("camera-faces"), result);
    setStatus("camera-status", describe(result));
  } catch (error) {
    setStatus("camera-status", `The server did not answer: ${error.message}`, true);
  } finally {
    camera.busy = false;
  }
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("camera-status", "This browser gives no camera to this page: it needs https or localhost " +
      "(open the page as http://localhost:PORT/). The photo upload works anyway.", true);
    return;
  }
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    setStatus("camera-status", `No camera: ${error.message || error.name}`, true);
    return;
  }
  $("camera-video").srcObject = camera.stream;
  $("camera-start").disabled = true;
  $("camera-stop").disabled = false;
  setStatus("camera-status", "Camera on; waiting for the first answer...");
  camera.timer = setInterval(sendFrame, 1000 / FRAMES_PER_SECOND);
}

function stopCamera() {
  clearInterval(camera.timer);
  if (camera.stream) camera.stream.getTracks().forEach((track) => track.stop());
  camera.stream = null;
  $("camera-video").srcObject = null;
  drawBoxes($("camera-overlay"), { width: 1, height: 1, faces: [] });
  $("camera-faces").replaceChildren();
  $("camera-start").disabled = false;
  $("camera-stop").disabled = true;
  setStatus("camera-status", "The camera is off.");
}

// --- photo ----------------------------------------------------------------------------
async function sendPhoto() {
  const file = $("photo-input").files[0];
  if (!file) return;
  const image = $("photo-image");
  if (image.src) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(file);
  $("photo-view").hidden = false;
  drawBoxes($("photo-overlay"), { width: 1, height: 1, faces: [] });
  $("photo-faces").replaceChildren();
  setStatus("photo-status", `Sending ${file.name}...`);
  const form = new FormData();
  form.append("image", file);
  try {
    const result = await predict(form);
    drawBoxes($("photo-overlay"), result);
    renderFaces($("photo-faces"), result);
    setStatus("photo-status", describe(result));
  } catch (error) {
    $("photo-view").hidden = true;
    setStatus("photo-status", `Refused: ${error.message}`, true);
  }
}

// --- start ----------------------------------------------------------------------------
async function loadInfo() {
  try {
    const info = await (await fetch("api/info")).json();
    classes = info.classes;
    $("model").textContent = `Model: ${info.engine}, ${info.input.channels === 1 ? "gray" : "RGB"} ` +
      `${info.input.size}x${info.input.size} input, classes: ${classes.join(", ")}.`;
    const links = { report: "run report", gallery: "translation gallery" };
    for (const [key, href] of Object.entries(info.run)) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = links[key] || key;
      $("run-links").append(a);
    }
  } catch (error) {
    $("model").textContent = `Cannot reach the server: ${error.message}`;
  }
}

$("camera-start").addEventListener("click", startCamera);
$("camera-stop").addEventListener("click", stopCamera);
$("photo-input").addEventListener("change", sendPhoto);
loadInfo();
