// unils live avatar: microphone (or a file) -> PCM16 over WebSocket -> frames -> canvas.
// Flow control: the page never has more than ready.flow.credit_bytes of audio sent and not yet
// acknowledged by the server ("ack" messages); blocks beyond it wait here, in order. A block of any
// length goes out as messages of at most half the credit and the server's max_message_bytes.
// Views: "3d" (default) draws both people as the bundled 3-D head (head3d.js, three.js) from the
// server's ARKit frames: the hello asks for both people ("both", two channels: you and a silent or
// recorded partner) and "arkit"; "2d" draws you alone as the schematic face (avatar.js).
import { drawAvatar, neutralFrame } from './avatar.js';
import { HeadScene, loadHead } from './head3d.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// Everything the page knows, exposed for debugging and for the browser test.
const demo = {
  status: 'idle', ready: null, stats: null, closeCode: null, closeReason: '', errors: [],
  framesReceived: 0, framesShown: 0, audioSent: 0, lag: null, level: 0, sampleRate: null,
  source: null, sentBytes: 0, ackedBytes: 0, waitingBytes: 0, maxWaitingBytes: 0,
  view: '2d', channels: 1, head3d: null,
};
window.unilsDemo = demo;

let ws = null, audioCtx = null, micStream = null, worklet = null;
let fps = 25, frames = [], base = 0, playStart = null, current = neutralFrame();
let pending = [], credit = 0, messageBytes = 0, endRequested = false, endSent = false;

if (params.get('hop')) $('mode').value = params.get('hop');
if (params.get('arkit')) $('arkit').checked = true;
if (params.get('view')) $('view').value = params.get('view');

// The 3-D heads: loaded once; without WebGL the page falls back to the schematic face.
let heads = null;
async function setupHeads() {
  if ($('view').value !== '3d') return;
  try {
    const head = await loadHead();
    heads = new HeadScene($('heads'), head, 2);
    demo.head3d = { framesRendered: 0, gaps: [], shapes: head.manifest.shapes.length };
  } catch (err) {
    heads = null;
    $('view').value = '2d';
    $('head-note').textContent = `3-D heads unavailable here (${err.message || err}); showing the schematic face`;
  }
  showView();
}
function showView() {
  const is3d = $('view').value === '3d' && heads !== null;
  demo.view = is3d ? '3d' : '2d';
  $('heads-box').hidden = !is3d;
  $('avatar').hidden = is3d;
}
$('view').addEventListener('change', () => { if ($('view').value === '3d' && !heads) setupHeads(); else showView(); });
setupHeads();

// ARKit: with the box ticked the hello asks for "arkit": true and each frame carries its 52 weights and
// head/eye angles (unils.arkit); the panel shows a few of them for the frame on screen.
const ARKIT_SHOWN = ['jawOpen', 'eyeBlinkLeft', 'eyeBlinkRight', 'eyeLookUpLeft', 'eyeLookDownLeft',
  'eyeLookInLeft', 'eyeLookOutLeft', 'mouthSmileLeft', 'browInnerUp'];
let arkitIndex = null;

function showArkit(entry) {
  const panel = $('arkit-panel');
  if (!entry || !arkitIndex) { panel.hidden = true; return; }
  panel.hidden = false;
  const deg = (r) => (r * 180 / Math.PI).toFixed(1);
  panel.innerHTML = ARKIT_SHOWN.map((name) => {
    const w = entry.weights[arkitIndex[name]] ?? 0;
    return `<tr><th>${name}</th><td><meter min="0" max="1" value="${w}"></meter> ${w.toFixed(2)}</td></tr>`;
  }).join('') + `<tr><th>head yaw / pitch / roll</th><td>${entry.head.map(deg).join(' / ')} deg</td></tr>`;
  demo.arkitShown = entry;
}

function setStatus(text, error = false) {
  demo.status = text;
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

function fmt(s, digits = 2) { return s == null ? '-' : `${s.toFixed(digits)} s`; }

// PCM16, interleaved when there is a second channel (the partner's voice, or silence).
function toPcm16(float32, partner = null) {
  const ch = demo.channels;
  const out = new Int16Array(float32.length * ch);
  for (let i = 0; i < float32.length; i++) {
    out[i * ch] = Math.round(Math.max(-1, Math.min(1, float32[i])) * 32767);
    if (ch === 2 && partner) out[i * ch + 1] = Math.round(Math.max(-1, Math.min(1, partner[i] || 0)) * 32767);
  }
  return out;
}

// Send queued blocks while the credit allows, then the end message once asked for and all is sent.
function pump() {
  if (!ws || ws.readyState !== WebSocket.OPEN || !demo.ready) return;
  while (pending.length) {
    const size = Math.min(pending[0].byteLength, messageBytes);
    const outstanding = demo.sentBytes - demo.ackedBytes;
    if (outstanding > 0 && outstanding + size > credit) break;  // no room yet: wait for an ack
    let buf = pending[0];
    if (buf.byteLength > size) {  // split: the rest stays first in line
      pending[0] = buf.slice(size);
      buf = buf.slice(0, size);
    } else {
      pending.shift();
    }
    ws.send(buf);
    demo.sentBytes += buf.byteLength;
    demo.waitingBytes -= buf.byteLength;
  }
  demo.audioSent = demo.sentBytes / 2 / demo.channels / demo.sampleRate;
  if (endRequested && !endSent && !pending.length) {
    endSent = true;
    setStatus('finishing');
    ws.send(JSON.stringify({ type: 'end' }));  // the server flushes, sends "end" and closes
  }
}

function queueAudio(float32, partner = null) {
  const buf = toPcm16(float32, partner).buffer;
  pending.push(buf);
  demo.waitingBytes += buf.byteLength;
  demo.maxWaitingBytes = Math.max(demo.maxWaitingBytes, demo.waitingBytes);
  pump();
}

function onAudio(block) {
  let sum = 0;
  for (let i = 0; i < block.length; i++) sum += block[i] * block[i];
  demo.level = Math.sqrt(sum / block.length);
  if (!ws || ws.readyState !== WebSocket.OPEN || !demo.ready || endRequested) return;
  queueAudio(block);
}

function onMessage(event) {
  if (typeof event.data !== 'string') return; // the page asks for JSON frames
  const msg = JSON.parse(event.data);
  if (msg.type === 'ready') {
    demo.ready = msg;
    fps = msg.fps;
    arkitIndex = msg.arkit_names ? Object.fromEntries(msg.arkit_names.map((n, i) => [n, i])) : null;
    credit = msg.flow.credit_bytes;
    // PCM16: whole sample frames (2 bytes per channel), within the server's message limit and half the credit.
    const limit = Math.min(msg.limits ? msg.limits.max_message_bytes : 1 << 20, Math.floor(credit / 2));
    const frameBytes = 2 * demo.channels;
    messageBytes = Math.max(frameBytes, limit - (limit % frameBytes));
    $('algo').textContent = fmt(msg.algorithmic_latency_s);
    setStatus(`streaming (session ${msg.session}, ${msg.exact ? 'exact' : 'hop ' + msg.hop_frames})`);
    if (demo.source === 'file') sendFile();
    pump();
  } else if (msg.type === 'ack') {
    demo.ackedBytes = msg.audio_bytes;
    pump();
  } else if (msg.type === 'frames') {
    if (msg.arkit) msg.frames.forEach((f, i) => { f.arkit = msg.arkit[i]; });
    if (msg.partner_arkit) msg.frames.forEach((f, i) => { f.partnerArkit = msg.partner_arkit[i]; });
    frames.push(...msg.frames);
    demo.framesReceived = msg.start + msg.count;
    demo.lag = demo.audioSent - demo.framesReceived / fps;
    if (playStart === null) playStart = performance.now() - (msg.start / fps) * 1000;
    $('frames').textContent = String(demo.framesReceived);
    $('lag').textContent = fmt(demo.lag);
  } else if (msg.type === 'stats' || msg.type === 'end') {
    demo.stats = msg;
    $('step').textContent = `${(msg.step_p50_s * 1000).toFixed(0)} / ${(msg.step_p95_s * 1000).toFixed(0)} ms`;
    $('rtf').textContent = msg.real_time_factor.toFixed(3);
    if (msg.type === 'end') setStatus(`ended: ${msg.frames_emitted} frames`);
  }
}

let fileSamples = null, filePartner = null;

// A decoded file, queued as one block (as a text-to-speech engine would hand over a whole
// utterance): pump() splits it into messages and the credit paces what goes out. A stereo file in the
// 3-D view is a conversation: left = you (first head), right = the partner (second head).
function sendFile() {
  queueAudio(fileSamples, filePartner);
  endRequested = true;
  pump();
}

// Stream decoded samples (mono float32 at sampleRate, and optionally the partner's) as one block, then
// end: what a file does.
function streamSamples(samples, sampleRate, partner = null) {
  fileSamples = samples;
  filePartner = partner;
  demo.sampleRate = sampleRate;
  connect('file');
}
demo.streamSamples = streamSamples;

async function startFile(file) {
  $('start').disabled = true;
  $('file').disabled = true;
  demo.errors = [];
  try {
    const ctx = new AudioContext();
    const decoded = await ctx.decodeAudioData(await file.arrayBuffer());
    ctx.close();
    $('mic').textContent = `file, ${decoded.sampleRate} Hz, ${decoded.duration.toFixed(1)} s`;
    const partner = decoded.numberOfChannels > 1 ? decoded.getChannelData(1) : null;
    streamSamples(decoded.getChannelData(0), decoded.sampleRate, partner);
  } catch (err) {
    demo.errors.push(String(err));
    setStatus(`cannot read the file: ${err.message || err}`, true);
    $('start').disabled = false;
    $('file').disabled = false;
  }
}

async function start() {
  $('start').disabled = true;
  $('file').disabled = true;
  demo.errors = [];
  try {
    audioCtx = new AudioContext();
    micStream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    await audioCtx.audioWorklet.addModule('capture-worklet.js');
    const source = audioCtx.createMediaStreamSource(micStream);
    worklet = new AudioWorkletNode(audioCtx, 'unils-capture', {
      processorOptions: { blockSize: Math.round(audioCtx.sampleRate * 0.02) },  // 20 ms blocks
    });
    worklet.port.onmessage = (e) => onAudio(e.data);
    source.connect(worklet);
    worklet.connect(audioCtx.destination);  // the worklet outputs silence; this keeps it pulled
    await audioCtx.resume();
    demo.sampleRate = audioCtx.sampleRate;
    $('mic').textContent = `${audioCtx.sampleRate} Hz`;
  } catch (err) {
    demo.errors.push(String(err));
    setStatus(`microphone unavailable: ${err.message || err}`, true);
    $('start').disabled = false;
    $('file').disabled = false;
    return;
  }
  connect('mic');
}

function connect(source) {
  const mode = $('mode').value;
  const token = params.get('token');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${scheme}://${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : ''));
  ws.binaryType = 'arraybuffer';
  frames = []; base = 0; playStart = null;
  pending = []; credit = 0; endRequested = false; endSent = false;
  Object.assign(demo, {
    ready: null, stats: null, closeCode: null, closeReason: '', framesReceived: 0, framesShown: 0, audioSent: 0,
    lag: null, source, sentBytes: 0, ackedBytes: 0, waitingBytes: 0, maxWaitingBytes: 0,
  });
  setStatus('connecting');
  const both = demo.view === '3d';
  demo.channels = both ? 2 : 1;
  ws.onopen = () => ws.send(JSON.stringify({
    type: 'hello', version: 1, sample_rate: demo.sampleRate, encoding: 'pcm16', channels: demo.channels,
    format: 'json', seed: 0, hop_frames: mode === 'exact' ? null : Number(mode),
    arkit: both || $('arkit').checked, ...(both ? { both: true } : {}),
  }));
  ws.onmessage = onMessage;
  ws.onerror = () => demo.errors.push('websocket error');
  ws.onclose = (e) => {
    demo.closeCode = e.code;
    demo.closeReason = e.reason;
    if (e.code !== 1000) setStatus(`closed (${e.code})${e.reason ? ': ' + e.reason : ''}`, true);
    stopAudio();
    pending = [];
    $('start').disabled = false;
    $('file').disabled = false;
    $('stop').disabled = true;
  };
  $('stop').disabled = false;
}

function stopAudio() {
  if (micStream) micStream.getTracks().forEach((t) => t.stop());
  if (audioCtx) audioCtx.close();
  micStream = null; audioCtx = null; worklet = null;
}

function stop() {
  $('stop').disabled = true;
  stopAudio();
  endRequested = true;  // the audio already queued is still sent, then the end message
  pump();
}

function render(now) {
  // Play frames at 25 fps from the first arrival; when the buffer runs dry, hold the last frame and
  // re-anchor the clock so that playback resumes without skipping.
  if (playStart !== null && frames.length > 0) {
    let index = Math.floor(((now - playStart) / 1000) * fps);
    const last = base + frames.length - 1;
    if (index > last) {
      index = last;
      playStart = now - (index / fps) * 1000;
    }
    if (index >= base) {
      current = frames[index - base];
      demo.framesShown = Math.max(demo.framesShown, index + 1);
      frames = frames.slice(index - base);  // drop what has been shown
      base = index;
    }
  }
  if (demo.view === '3d' && heads) {
    const names = demo.ready && demo.ready.arkit_names;
    if (names && current.arkit && current !== heads.shown) {
      heads.setFrame(0, current.arkit, names);
      heads.setFrame(1, current.partnerArkit, names);
      heads.shown = current;
      demo.head3d.gaps.push(heads.people.map((p) => p.mouthGap));
    }
    heads.render();
    demo.head3d.framesRendered = heads.framesRendered;
    $('heads-caption').textContent = `frame ${demo.framesShown}`;
  } else {
    drawAvatar($('avatar').getContext('2d'), current, { level: Math.min(1, demo.level * 5), caption: `frame ${demo.framesShown}` });
  }
  showArkit(current.arkit);
  $('audio').textContent = `${demo.audioSent.toFixed(1)} s`;
  $('waiting').textContent = demo.sampleRate ? `${(demo.waitingBytes / 2 / demo.sampleRate).toFixed(1)} s` : '-';
  requestAnimationFrame(render);
}

$('start').addEventListener('click', start);
$('stop').addEventListener('click', stop);
$('file').addEventListener('change', (e) => { if (e.target.files.length) startFile(e.target.files[0]); });
requestAnimationFrame(render);
