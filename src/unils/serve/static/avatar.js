// A schematic face driven by one unils frame: head rotation, jaw, eye gaze, two brows and a
// speaking indicator. Values are clamped so that any model (even random weights) stays drawable.

const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, Number.isFinite(x) ? x : 0));

export function neutralFrame() {
  return { expression: new Array(100).fill(0), head_pose: [0, 0, 0], jaw: [0], eyes: [0, 0, 0, 0] };
}

export function drawAvatar(ctx, frame, opts = {}) {
  const { width: w, height: h } = ctx.canvas;
  const r = Math.min(w, h) * 0.3;
  const [pitch, yaw, roll] = frame.head_pose.map((v) => clamp(v, -0.6, 0.6));
  const jaw = clamp(frame.jaw[0], 0, 0.5);
  const [e1x, e1y, e2x, e2y] = frame.eyes.map((v) => clamp(v, -0.5, 0.5));
  const ex = frame.expression;
  const brow = clamp(ex[0] * 0.25, -0.15, 0.15);       // first expression components move the brows
  const smile = clamp(ex[1] * 0.2, -0.15, 0.15);       // and the mouth corners

  ctx.clearRect(0, 0, w, h);
  ctx.save();
  ctx.translate(w / 2, h / 2 + r * 0.1);
  ctx.rotate(roll);                                     // roll tilts the whole head

  // Yaw and pitch move the features across the face, as on a turning sphere.
  const fx = Math.sin(yaw) * r * 0.55;
  const fy = -Math.sin(pitch) * r * 0.45;

  // neck and head
  ctx.fillStyle = '#c9a88f';
  ctx.fillRect(-r * 0.28, r * 0.75, r * 0.56, r * 0.6);
  ctx.beginPath();
  ctx.ellipse(fx * 0.15, fy * 0.15, r * 0.82, r, 0, 0, Math.PI * 2);
  ctx.fillStyle = '#f0cdb2';
  ctx.fill();
  ctx.lineWidth = 3;
  ctx.strokeStyle = '#8a6a55';
  ctx.stroke();

  // eyes with pupils following the eye joints (x: up/down, y: left/right)
  const eyeY = fy - r * 0.2;
  for (const [side, gx, gy] of [[-1, e1x, e1y], [1, e2x, e2y]]) {
    const cx = fx + side * r * 0.32;
    ctx.beginPath();
    ctx.ellipse(cx, eyeY, r * 0.16, r * 0.1, 0, 0, Math.PI * 2);
    ctx.fillStyle = '#fff';
    ctx.fill();
    ctx.strokeStyle = '#5b4636';
    ctx.lineWidth = 2;
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(cx + Math.sin(gy) * r * 0.12 + Math.sin(yaw) * r * 0.04, eyeY - Math.sin(gx) * r * 0.08, r * 0.055, 0, Math.PI * 2);
    ctx.fillStyle = '#2b2f3a';
    ctx.fill();
    // brow
    ctx.beginPath();
    ctx.moveTo(cx - r * 0.17, eyeY - r * (0.2 + brow));
    ctx.quadraticCurveTo(cx, eyeY - r * (0.28 + brow), cx + r * 0.17, eyeY - r * (0.2 + brow) + side * brow * r * 0.2);
    ctx.lineWidth = 5;
    ctx.strokeStyle = '#6b4b35';
    ctx.stroke();
  }

  // nose
  ctx.beginPath();
  ctx.moveTo(fx * 1.1, fy - r * 0.05);
  ctx.lineTo(fx * 1.15 - r * 0.06, fy + r * 0.18);
  ctx.lineTo(fx * 1.1 + r * 0.02, fy + r * 0.2);
  ctx.lineWidth = 3;
  ctx.strokeStyle = '#b08366';
  ctx.stroke();

  // mouth: the jaw opens it, the smile component bends its corners
  const mouthY = fy + r * 0.45;
  const mw = r * 0.34;
  const open = r * (0.02 + jaw * 0.9);
  ctx.beginPath();
  ctx.moveTo(fx - mw, mouthY - smile * r);
  ctx.quadraticCurveTo(fx, mouthY - open, fx + mw, mouthY - smile * r);
  ctx.quadraticCurveTo(fx, mouthY + open * 1.6, fx - mw, mouthY - smile * r);
  ctx.fillStyle = '#7a2e2e';
  ctx.fill();
  ctx.lineWidth = 3;
  ctx.strokeStyle = '#5a1f1f';
  ctx.stroke();
  ctx.restore();

  // speaking indicator: a microphone level bar, blue with "speaking" while above a threshold
  const level = clamp(opts.level || 0, 0, 1);
  const speaking = level > 0.05;
  ctx.fillStyle = 'rgba(120, 130, 150, 0.25)';
  ctx.fillRect(14, 14, 120, 10);
  ctx.fillStyle = speaking ? '#1f6feb' : '#7a8499';
  ctx.fillRect(14, 14, 120 * level, 10);
  ctx.font = '15px system-ui, sans-serif';
  ctx.fillText(speaking ? 'speaking' : 'quiet', 144, 25);
  if (opts.caption) {
    ctx.fillStyle = '#4a5263';
    ctx.fillText(opts.caption, 14, h - 14);
  }
}
