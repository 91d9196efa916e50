// The bundled 3-D head (ICT-FaceKit, MIT licence: /ict_head.LICENSE.txt) drawn with three.js (vendored,
// MIT: /three.LICENSE.txt) and driven by the server's ARKit frames: 52 blendshape weights (blended on the
// CPU from sparse float16 offsets), each eye turned by its gaze, the head turned by yaw / pitch / roll.
// The same asset and conventions as unils.arkit.ArkitHead (Python): centimetres, x to the subject's
// left, y up, z out of the face; R = Ry(yaw) Rx(-pitch) Rz(roll).
import * as THREE from './three.min.js';

// Colour classes (the asset's paint_names) -> RGB; skin and iris change per person (as in unils.viz.head3d).
const PAINT = {
  lip: [0.70, 0.40, 0.40], mouth: [0.42, 0.12, 0.14], eye_socket: [0.78, 0.52, 0.48], gums: [0.74, 0.36, 0.38],
  teeth: [0.93, 0.91, 0.84], cornea: [0.95, 0.94, 0.92], sclera: [0.95, 0.94, 0.92], pupil: [0.05, 0.04, 0.04],
};
const SKINS = [[0.90, 0.72, 0.62], [0.74, 0.55, 0.43]];
const IRISES = [[0.27, 0.43, 0.63], [0.30, 0.20, 0.12]];

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

// Fetch the manifest and the arrays (served beside the page) and decode them.
export async function loadHead(base = '') {
  const manifest = await (await fetch(`${base}ict_head.json`)).json();
  const bin = await (await fetch(`${base}${manifest.bin}`)).arrayBuffer();
  const view = (key, Ctor) => {
    const a = manifest.arrays[key];
    return new Ctor(bin, a.offset, a.nbytes / Ctor.BYTES_PER_ELEMENT);
  };
  const vertices = view('vertices', Float32Array);
  const faces = view('faces', Uint16Array);
  const part = view('part', Uint8Array);
  const paint = view('paint', Uint8Array);
  const indices = view('shape_indices', Uint16Array);
  const half = view('shape_offsets', Uint16Array);
  const shapes = {};
  let start = 0;
  manifest.shapes.forEach((name, k) => {
    const n = manifest.shape_counts[k];
    const off = new Float32Array(n * 3);
    for (let i = 0; i < n * 3; i++) off[i] = halfToFloat(half[start * 3 + i]);
    shapes[name] = { idx: indices.subarray(start, start + n), off };
    start += n;
  });
  // The clear cornea shells are left out: the eyeballs under them carry the iris and pupil.
  const cornea = manifest.part_names.indexOf('cornea');
  const kept = [];
  for (let t = 0; t < faces.length; t += 3) {
    if (part[faces[t]] !== cornea && part[faces[t + 1]] !== cornea && part[faces[t + 2]] !== cornea) {
      kept.push(faces[t], faces[t + 1], faces[t + 2]);
    }
  }
  return { manifest, vertices, faces: new Uint16Array(kept), paint, shapes };
}

function colours(head, who) {
  const names = head.manifest.paint_names;
  const table = names.map((n) => (n === 'skin' ? SKINS[who % 2] : n === 'iris' ? IRISES[who % 2] : PAINT[n]));
  // The table is in sRGB (as unils.viz.head3d uses it); three.js lights in linear space.
  const linear = table.map((rgb) => rgb.map((c) => c ** 2.2));
  const out = new Float32Array(head.vertices.length);
  for (let v = 0; v < head.paint.length; v++) out.set(linear[head.paint[v]], v * 3);
  return out;
}

const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, Number.isFinite(x) ? x : 0));

// Two heads side by side in one WebGL canvas; setFrame(who, entry) poses one from an ARKit entry
// ({weights, head, eyes} of a frames message, weights in the order of ready.arkit_names).
export class HeadScene {
  constructor(canvas, head, people = 2) {
    this.head = head;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(1);
    this.renderer.setSize(canvas.width, canvas.height, false);
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0.94, 0.95, 0.97);
    const aspect = canvas.width / canvas.height;
    this.camera = new THREE.PerspectiveCamera(22, aspect, 10, 1000);
    this.camera.position.set(0, 0, 52 * people / aspect + 40);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x665544, 0.9));
    const sun = new THREE.DirectionalLight(0xffffff, 1.6);
    sun.position.set(0.3, 0.4, 1.0);
    this.scene.add(sun);
    const pivot = head.manifest.pivot;
    this.people = [];
    for (let who = 0; who < people; who++) {
      const geometry = new THREE.BufferGeometry();
      const positions = new Float32Array(head.vertices);
      geometry.setAttribute('position', new THREE.BufferAttribute(positions, 3));
      geometry.setAttribute('color', new THREE.BufferAttribute(colours(head, who), 3));
      geometry.setIndex(new THREE.BufferAttribute(head.faces, 1));
      geometry.computeVertexNormals();
      const mesh = new THREE.Mesh(geometry, new THREE.MeshLambertMaterial({ vertexColors: true }));
      mesh.position.set(-pivot[0], -pivot[1], -pivot[2]);
      const group = new THREE.Group();
      group.add(mesh);
      group.position.set(pivot[0] + (who - (people - 1) / 2) * 30, pivot[1] + 1.5, pivot[2]);
      this.scene.add(group);
      this.people.push({ group, geometry, positions, mouthGap: 0, key: null });
    }
    this.framesRendered = 0;
  }

  // Blend the shapes, turn the eyes and the head. names: ready.arkit_names (the weights' order).
  setFrame(who, entry, names) {
    const p = this.people[who];
    if (!p || !entry) return;
    const key = entry;  // the same entry object: nothing to do
    if (p.key === key) return;
    p.key = key;
    const { vertices, shapes, manifest } = this.head;
    const pos = p.positions;
    pos.set(vertices);
    names.forEach((name, k) => {
      const w = clamp(entry.weights[k], 0, 1);
      const s = shapes[name];
      if (!s || w < 1e-3) return;
      const { idx, off } = s;
      for (let i = 0; i < idx.length; i++) {
        const v = idx[i] * 3;
        pos[v] += w * off[i * 3];
        pos[v + 1] += w * off[i * 3 + 1];
        pos[v + 2] += w * off[i * 3 + 2];
      }
    });
    manifest.eye_vertices.forEach(([a, b], e) => {
      const [yaw, pitch] = (entry.eyes[e] || [0, 0]).map((x) => clamp(x, -0.6, 0.6));
      if (!yaw && !pitch) return;
      const m = new THREE.Matrix4().makeRotationFromEuler(new THREE.Euler(-pitch, yaw, 0, 'YXZ'));
      const c = manifest.eye_centres[e];
      const q = new THREE.Vector3();
      for (let v = a; v < b; v++) {
        q.set(pos[v * 3] - c[0], pos[v * 3 + 1] - c[1], pos[v * 3 + 2] - c[2]).applyMatrix4(m);
        pos[v * 3] = q.x + c[0]; pos[v * 3 + 1] = q.y + c[1]; pos[v * 3 + 2] = q.z + c[2];
      }
    });
    const [yaw, pitch, roll] = entry.head.map((x) => clamp(x, -0.7, 0.7));
    p.group.rotation.set(-pitch, yaw, roll, 'YXZ');
    const { upper, lower } = manifest.lip_midpoints;
    p.mouthGap = pos[upper * 3 + 1] - pos[lower * 3 + 1];  // cm between the inner lips
    p.geometry.attributes.position.needsUpdate = true;
    p.geometry.computeVertexNormals();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
    this.framesRendered += 1;
  }
}
