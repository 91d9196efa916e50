// The three.js classes the browser demo (src/unils/serve/static/head3d.js) uses; scripts/build_three.sh bundles them.
export {
  WebGLRenderer, Scene, PerspectiveCamera, Group, Mesh, BufferGeometry, BufferAttribute, MeshLambertMaterial,
  HemisphereLight, DirectionalLight, Color, Matrix4, Euler, Vector3, REVISION,
} from 'three';
