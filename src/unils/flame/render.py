"""A small z-buffer rasterizer for FLAME meshes: orthographic camera, flat or smooth Lambert shading.

Pure torch (CPU or GPU), no extra needed to get frames: [`render_motion`][unils.flame.render.render_motion]
returns ``uint8 [T, H, W, 3]`` arrays. Writing them as a video
([`write_rendered_video`][unils.flame.render.write_rendered_video]) needs ``unils[viz]`` (imageio +
imageio-ffmpeg).

Conventions: vertices in metres with FLAME's axes (x to the subject's left = image right, y up,
z towards the camera). The camera looks down -z, so the nearest surface is the one with the largest z.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch

from ..errors import MissingDependencyError, MotionError

__all__ = [
    "Camera",
    "fit_camera",
    "rasterize",
    "render_vertices",
    "render_motion",
    "write_rendered_video",
    "write_video",
    "FlameFrameRenderer",
]

logger = logging.getLogger("unils.flame.render")

#: Fragments (pixel x triangle candidates) handled at once; bounds memory for any mesh and size.
_MAX_FRAGMENTS = 1 << 22


@dataclass(frozen=True)
class Camera:
    """Orthographic camera: ``column = (x - cx) * scale + width / 2``, ``row = height / 2 - (y - cy) * scale``.

    Attributes:
        center: (cx, cy) world point at the image centre (metres).
        scale: pixels per metre.
        width: image width in pixels.
        height: image height in pixels.
    """

    center: tuple[float, float]
    scale: float
    width: int
    height: int

    def project(self, vertices: torch.Tensor) -> torch.Tensor:
        """[..., V, 3] world points -> [..., V, 3] (column, row, depth) in pixel units (depth = z, metres)."""
        cx, cy = self.center
        col = (vertices[..., 0] - cx) * self.scale + self.width / 2
        row = self.height / 2 - (vertices[..., 1] - cy) * self.scale
        return torch.stack([col, row, vertices[..., 2]], dim=-1)


def fit_camera(vertices: Any, width: int = 512, height: int | None = None, margin: float = 0.12) -> Camera:
    """A camera that frames the x/y extent of ``vertices`` (all frames together) with a margin.

    Args:
        vertices: [V, 3] or [T, V, 3] points (numpy or torch).
        width: image width in pixels.
        height: image height (default: ``width``).
        margin: fraction of the image left free on each side of the tighter axis.

    Returns:
        The fitted [`Camera`][unils.flame.render.Camera].
    """
    height = width if height is None else height
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    v = torch.as_tensor(np.asarray(vertices) if not isinstance(vertices, torch.Tensor) else vertices)
    pts = v.reshape(-1, 3).double()
    if pts.shape[0] == 0:
        raise MotionError("cannot fit a camera to zero vertices")
    lo, hi = pts[:, :2].min(0).values, pts[:, :2].max(0).values
    centre = (lo + hi) / 2
    extent = torch.clamp(hi - lo, min=1e-9)
    usable = 1.0 - 2.0 * margin
    scale = min(width * usable / float(extent[0]), height * usable / float(extent[1]))
    return Camera((float(centre[0]), float(centre[1])), float(scale), int(width), int(height))


def rasterize(
    screen: torch.Tensor, faces: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Visible triangle and barycentric coordinates at every pixel centre (z-buffer, nearest = largest depth).

    A pixel ``(row, col)`` is sampled at its centre ``(col + 0.5, row + 0.5)``. Both windings are drawn
    (no back-face culling), so the result does not depend on the mesh's orientation.

    Args:
        screen: [V, 3] (column, row, depth) per vertex, e.g. from
            [`Camera.project`][unils.flame.render.Camera.project].
        faces: [F, 3] vertex indices.
        width: image width.
        height: image height.

    Returns:
        ``(face_id [H, W] int64, -1 = background; bary [H, W, 3] float)``.
    """
    dev, dtype = screen.device, screen.dtype
    npix = width * height
    zbuf = torch.full((npix,), -torch.inf, dtype=dtype, device=dev)
    fbuf = torch.full((npix,), -1, dtype=torch.long, device=dev)
    bbuf = torch.zeros((npix, 3), dtype=dtype, device=dev)
    if faces.numel() == 0:
        return fbuf.view(height, width), bbuf.view(height, width, 3)
    tri = screen[faces]  # [F, 3, 3]
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    # Pixel centres inside each triangle's bounding box.
    x0 = torch.clamp(torch.ceil(x.min(1).values - 0.5), min=0).long()
    x1 = torch.clamp(torch.floor(x.max(1).values - 0.5), max=width - 1).long()
    y0 = torch.clamp(torch.ceil(y.min(1).values - 0.5), min=0).long()
    y1 = torch.clamp(torch.floor(y.max(1).values - 0.5), max=height - 1).long()
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    finite = torch.isfinite(tri).all(dim=(1, 2))
    keep = (x1 >= x0) & (y1 >= y0) & (area.abs() > 1e-12) & finite
    idx = torch.nonzero(keep).squeeze(1)
    if idx.numel() == 0:
        return fbuf.view(height, width), bbuf.view(height, width, 3)
    bw = (x1 - x0 + 1)[idx]
    counts = bw * (y1 - y0 + 1)[idx]
    # Split the triangles into groups of bounded fragment count (a huge triangle is its own group).
    csum = torch.cumsum(counts, 0)
    group = torch.div(csum - counts, _MAX_FRAGMENTS, rounding_mode="floor")
    bounds = torch.nonzero(torch.diff(group, prepend=group[:1] - 1)).squeeze(1).tolist() + [idx.numel()]
    for a, b in zip(bounds[:-1], bounds[1:]):
        f_ids = idx[a:b]
        cnt = counts[a:b]
        owner = torch.repeat_interleave(torch.arange(b - a, device=dev), cnt)
        start = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(int(cnt.sum()), device=dev) - start[owner]
        w = bw[a:b][owner]
        f = f_ids[owner]
        px = x0[f] + local % w
        py = y0[f] + torch.div(local, w, rounding_mode="floor")
        cx, cy = px.to(dtype) + 0.5, py.to(dtype) + 0.5
        tx, ty = x[f], y[f]
        # Edge functions opposite each vertex, normalised by the signed area: barycentric coordinates.
        b0 = (tx[:, 1] - cx) * (ty[:, 2] - cy) - (tx[:, 2] - cx) * (ty[:, 1] - cy)
        b1 = (tx[:, 2] - cx) * (ty[:, 0] - cy) - (tx[:, 0] - cx) * (ty[:, 2] - cy)
        b2 = (tx[:, 0] - cx) * (ty[:, 1] - cy) - (tx[:, 1] - cx) * (ty[:, 0] - cy)
        bary = torch.stack([b0, b1, b2], dim=1) / area[f][:, None]
        inside = (bary >= -1e-9).all(dim=1)
        if not bool(inside.any()):
            continue
        bary, f, pix = bary[inside], f[inside], (py * width + px)[inside]
        depth = (bary * z[f]).sum(1)
        cand = torch.full((npix,), -torch.inf, dtype=dtype, device=dev)
        cand.scatter_reduce_(0, pix, depth, reduce="amax")
        better = cand > zbuf
        win = better[pix] & (depth == cand[pix])
        zbuf = torch.where(better, cand, zbuf)
        fbuf[pix[win]] = f[win]
        bbuf[pix[win]] = bary[win]
    return fbuf.view(height, width), bbuf.view(height, width, 3)


def _vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tri = verts[faces]
    fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)  # area-weighted
    vn = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(fn, dim=-1), torch.nn.functional.normalize(vn, dim=-1)


def _as_rgb(color: Sequence[float], name: str) -> torch.Tensor:
    c = torch.as_tensor(np.asarray(color, dtype=np.float64).reshape(-1))
    if c.shape != (3,):
        raise ValueError(f"{name} must have 3 components, got {list(c.shape)}")
    return c / 255.0 if float(c.max()) > 1.0 else c


def render_vertices(
    vertices: Any,
    faces: Any,
    width: int = 512,
    height: int | None = None,
    camera: Camera | None = None,
    *,
    shading: Literal["smooth", "flat"] = "smooth",
    color: Sequence[float] | np.ndarray = (0.78, 0.76, 0.74),
    background: Sequence[float] = (1.0, 1.0, 1.0),
    light: Sequence[float] = (0.25, 0.35, 1.0),
    ambient: float = 0.3,
    supersample: int = 1,
    cull_back: bool = False,
) -> np.ndarray:
    """Render mesh frames to RGB images.

    Args:
        vertices: [T, V, 3] or [V, 3] vertices (numpy or torch; metres, FLAME axes).
        faces: [F, 3] vertex indices.
        width: image width in pixels.
        height: image height (default: ``width``).
        camera: orthographic camera; None = [`fit_camera`][unils.flame.render.fit_camera] on all frames.
        shading: ``"smooth"`` (interpolated vertex normals) or ``"flat"`` (one normal per triangle).
        color: mesh albedo, RGB in [0, 1] (or 0-255), or a [V, 3] albedo per vertex (interpolated).
        background: background RGB in [0, 1] (or 0-255).
        light: direction towards the light (camera looks down -z); surfaces are lit from both sides.
        ambient: share of light that reaches every surface, in [0, 1].
        supersample: render at this many times the size and average down (anti-aliasing).
        cull_back: skip triangles that face away from the camera (counter-clockwise triangles, seen
            from the camera, face it): faster for closed meshes with consistent winding.

    Returns:
        uint8 [T, H, W, 3] frames ([1, H, W, 3] for a single [V, 3] mesh).
    """
    if shading not in ("smooth", "flat"):
        raise ValueError(f"shading must be 'smooth' or 'flat', got {shading!r}")
    if not 0.0 <= ambient <= 1.0:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")
    ss = int(supersample)
    if ss < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    v = vertices if isinstance(vertices, torch.Tensor) else torch.as_tensor(np.asarray(vertices))
    v = v.detach().to(torch.float32)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[-1] != 3:
        raise MotionError(f"vertices must be [T, V, 3] or [V, 3], got {list(v.shape)}")
    f = faces if isinstance(faces, torch.Tensor) else torch.as_tensor(np.asarray(faces))
    f = f.to(device=v.device, dtype=torch.long)
    if f.ndim != 2 or f.shape[1] != 3:
        raise MotionError(f"faces must be [F, 3], got {list(f.shape)}")
    if f.numel() and (int(f.min()) < 0 or int(f.max()) >= v.shape[1]):
        raise MotionError(f"faces index vertices outside 0..{v.shape[1] - 1}")
    height = width if height is None else height
    cam = fit_camera(v, width, height) if camera is None else camera
    big = Camera(cam.center, cam.scale * ss, cam.width * ss, cam.height * ss)
    per_vertex = np.ndim(color) == 2
    if per_vertex:
        albedo = torch.as_tensor(np.asarray(color, np.float32), device=v.device)
        if albedo.shape != (v.shape[1], 3):
            raise ValueError(f"per-vertex color must be [{v.shape[1]}, 3], got {list(albedo.shape)}")
        albedo = albedo / 255.0 if float(albedo.max()) > 1.0 else albedo
    else:
        albedo = _as_rgb(cast("Sequence[float]", color), "color").to(v.device, torch.float32)
    bg = _as_rgb(background, "background").to(v.device, torch.float32)
    ldir = torch.as_tensor(np.asarray(light, dtype=np.float32).reshape(-1), device=v.device)
    if ldir.shape != (3,) or float(ldir.norm()) == 0.0:
        raise ValueError(f"light must be a non-zero 3-vector, got {light!r}")
    ldir = ldir / ldir.norm()
    out = np.empty((v.shape[0], cam.height, cam.width, 3), dtype=np.uint8)
    for t in range(v.shape[0]):
        screen = big.project(v[t])
        fn, vn = _vertex_normals(v[t], f)
        ft = f
        if cull_back and f.numel():
            tri = screen[f]
            e1, e2 = tri[:, 1, :2] - tri[:, 0, :2], tri[:, 2, :2] - tri[:, 0, :2]
            # Rows grow downwards, so a triangle counter-clockwise in the world is clockwise here.
            front = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
            ft, fn = f[front], fn[front]
        fid, bary = rasterize(screen, ft, big.width, big.height)
        hit = fid >= 0
        img = bg.expand(big.height, big.width, 3).clone()
        if bool(hit.any()):
            fh = fid[hit]
            if shading == "flat":
                n = fn[fh]
            else:
                n = torch.nn.functional.normalize((bary[hit][..., None] * vn[ft[fh]]).sum(1), dim=-1)
            # Two-sided: a normal facing away from the camera is flipped before lighting.
            n = torch.where(n[:, 2:3] < 0, -n, n)
            lam = torch.clamp(n @ ldir, min=0.0)
            rgb = (bary[hit][..., None] * albedo[ft[fh]]).sum(1) if per_vertex else albedo
            img[hit] = rgb * (ambient + (1.0 - ambient) * lam)[:, None]
        if ss > 1:
            img = img.view(cam.height, ss, cam.width, ss, 3).mean(dim=(1, 3))
        out[t] = (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return out


def render_motion(
    motion: Any,
    flame: Any,
    width: int = 512,
    height: int | None = None,
    *,
    with_head_pose: bool = True,
    shape: Any | None = None,
    camera: Camera | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Render a motion as FLAME meshes.

    Args:
        motion: [`Motion`][unils.motion.Motion] or [T, 108] array.
        flame: a [`FlameModel`][unils.flame.model.FlameModel] (load yours with ``FlameModel.from_file``).
        width: image width in pixels.
        height: image height (default: ``width``).
        with_head_pose: apply the head rotation (columns 100-102).
        shape: optional identity (shape coefficients).
        camera: None = framed on the neutral head (same framing for every clip of a model).
        **kwargs: passed to [`render_vertices`][unils.flame.render.render_vertices] (``shading``, ``color``,
            ``supersample``...).

    Returns:
        uint8 [T, H, W, 3] frames.
    """
    with torch.no_grad():
        verts = flame.vertices(motion, with_head_pose=with_head_pose, shape=shape)
        if camera is None:
            neutral = flame.vertices(np.zeros((1, 108), np.float32), shape=shape)
            camera = fit_camera(neutral, width, height)
    logger.debug("rendering %d frames at %dx%d", verts.shape[0], camera.width, camera.height)
    return render_vertices(verts, flame.faces, camera=camera, **kwargs)


def write_rendered_video(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    fps: float = 25.0,
    audio: str | os.PathLike[str] | None = None,
) -> None:
    """Write the uint8 [T, H, W, 3] array of [`render_motion`][unils.flame.render.render_motion] as H.264
    video, with an audio file's sound.

    Unlike [`unils.viz.write_video`][unils.viz.video.write_video] (any iterable of frames, audio as samples,
    format by suffix, GIF too), this takes one frame array and muxes an audio *file* in with ffmpeg. Needs
    ``pip install "unils[viz]"`` (imageio + imageio-ffmpeg).

    Args:
        frames: uint8 [T, H, W, 3] frames (even H and W for H.264).
        path: output file; the suffix picks the container.
        fps: frame rate.
        audio: optional audio file muxed into the video (cut to the video's length).

    Raises:
        MissingDependencyError: imageio / imageio-ffmpeg are not installed.
    """
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError('writing videos needs imageio-ffmpeg: pip install "unils[viz]"') from exc
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {arr.dtype} {list(arr.shape)}")
    h, w = arr.shape[1:3]
    kwargs: dict[str, Any] = {
        "codec": "libx264",
        "pix_fmt_out": "yuv420p",
        "macro_block_size": 1,
        "output_params": ["-crf", "18"],
    }
    if audio is not None:
        kwargs.update(audio_path=str(audio), audio_codec="aac", output_params=["-crf", "18", "-shortest"])
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=float(fps), **kwargs)
    writer.send(None)  # start the generator
    try:
        for frame in arr:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def write_video(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    fps: float = 25.0,
    audio: str | os.PathLike[str] | None = None,
) -> None:
    """Deprecated name of [`write_rendered_video`][unils.flame.render.write_rendered_video]
    (``unils.viz.write_video`` is another function)."""
    warnings.warn(
        "unils.flame.write_video is deprecated and will be removed in a future release; use "
        "unils.flame.write_rendered_video (unils.viz.write_video is a different function)",
        DeprecationWarning,
        stacklevel=2,
    )
    write_rendered_video(frames, path, fps, audio)


def _output_frame_indices(num_frames: int, motion_fps: float, fps: float | None) -> np.ndarray:
    # Output frame k shows time k / fps, i.e. the nearest motion frame (the preview's convention).
    if fps is None or fps == motion_fps:
        return np.arange(num_frames, dtype=np.int64)
    if not (math.isfinite(fps) and fps > 0):
        raise MotionError(f"fps must be a positive number, got {fps!r}")
    count = math.ceil(num_frames * fps / motion_fps - 1e-9)
    idx = np.floor(np.arange(count) * (motion_fps / fps) + 0.5).astype(np.int64)
    return np.minimum(idx, max(num_frames - 1, 0))


@dataclass
class FlameFrameRenderer:
    """FLAME mesh panels for ``unils preview`` ([`unils.viz.FrameRenderer`][unils.viz.avatar.FrameRenderer]
    protocol).

    Each participant gets a ``size`` x ``size`` panel with their mesh (framed on the neutral head, so
    head motion shows), their label, and a green border while their speech activity says they speak.

    Attributes:
        flame: the [`FlameModel`][unils.flame.model.FlameModel] (your FLAME 2020 file).
        with_head_pose: apply the head rotation.
        shading: ``"smooth"`` or ``"flat"``.
        supersample: anti-aliasing factor (see [`render_vertices`][unils.flame.render.render_vertices]).
        color: mesh albedo (RGB in [0, 1]).
        background: panel background (RGB in [0, 1]).
        speaking_color: border colour while the participant speaks (RGB 0-255).
        chunk: output frames rendered per batch of vertices.
    """

    flame: Any
    with_head_pose: bool = True
    shading: Literal["smooth", "flat"] = "smooth"
    supersample: int = 2
    color: Sequence[float] = (0.78, 0.76, 0.74)
    background: Sequence[float] = (1.0, 1.0, 1.0)
    speaking_color: Sequence[int] = (46, 160, 67)
    chunk: int = 32

    def __call__(
        self,
        motions: Any,
        *,
        size: int = 320,
        fps: float | None = None,
        activity: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield uint8 [size, participants * size, 3] frames (size rounded up to even), one per output frame.

        Args:
            motions: one Motion or a list of Motions of the same length and fps.
            size: panel side in pixels.
            fps: output frame rate; None = the motions' (output frame k shows the nearest motion frame).
            activity: per participant, bool [T] speech activity or None.
            labels: per participant, a name drawn on the panel (needs Pillow; skipped without it).
        """
        motions, activity, labels = self._check(motions, activity, labels)
        size = max(16, int(size) + int(size) % 2)
        idx = _output_frame_indices(len(motions[0]), motions[0].fps, fps)
        camera = self._camera(size)
        for a in range(0, len(idx), max(1, int(self.chunk))):
            sel = idx[a : a + max(1, int(self.chunk))]
            panels = [self._panels(m.to_array()[sel], camera) for m in motions]
            for k, i in enumerate(sel):
                yield self._compose(
                    [p[k] for p in panels], [None if x is None else bool(x[i]) for x in activity], labels
                )

    def still(
        self,
        motions: Any,
        index: int,
        *,
        size: int = 320,
        activity: Sequence[np.ndarray | None] | None = None,
        labels: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Motion frame ``index`` as one uint8 [H, W, 3] picture (the frame
        [`__call__`][unils.flame.render.FlameFrameRenderer.__call__] yields for it)."""
        motions, activity, labels = self._check(motions, activity, labels)
        if not 0 <= index < len(motions[0]):
            raise IndexError(f"frame {index} out of range for {len(motions[0])} frames")
        size = max(16, int(size) + int(size) % 2)
        camera = self._camera(size)
        panels = [self._panels(m.to_array()[index : index + 1], camera)[0] for m in motions]
        return self._compose(panels, [None if x is None else bool(x[index]) for x in activity], labels)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check(motions: Any, activity: Any, labels: Any) -> tuple[list[Any], list[Any], list[str]]:
        from ..motion import Motion

        motions = [motions] if isinstance(motions, Motion) else list(motions)
        if not motions or not all(isinstance(m, Motion) for m in motions):
            raise MotionError("give one or more Motion objects to render")
        if len({len(m) for m in motions}) > 1 or len({m.fps for m in motions}) > 1:
            raise MotionError("the motions must have the same length and frame rate")
        activity = list(activity) if activity is not None else [None] * len(motions)
        labels = list(labels) if labels is not None else [chr(ord("A") + i) for i in range(len(motions))]
        if len(activity) != len(motions) or len(labels) != len(motions):
            raise MotionError("give one activity (or None) and one label per motion")
        return motions, activity, labels

    def _camera(self, size: int) -> Camera:
        with torch.no_grad():
            neutral = self.flame.vertices(np.zeros((1, 108), np.float32))
        return fit_camera(neutral, size, size)

    def _panels(self, motion: np.ndarray, camera: Camera) -> np.ndarray:
        with torch.no_grad():
            verts = self.flame.vertices(motion, with_head_pose=self.with_head_pose)
        return render_vertices(
            verts,
            self.flame.faces,
            camera=camera,
            shading=self.shading,
            color=self.color,
            background=self.background,
            supersample=self.supersample,
        )

    def _compose(
        self, panels: list[np.ndarray], speaking: list[bool | None], labels: list[str]
    ) -> np.ndarray:
        panels = [p.copy() for p in panels]
        size = panels[0].shape[0]
        width = max(2, size // 80)
        for p, talk in zip(panels, speaking):
            if talk:
                p[:width], p[-width:], p[:, :width], p[:, -width:] = (
                    np.asarray(self.speaking_color, np.uint8),
                ) * 4
        frame = np.concatenate(panels, axis=1)
        try:
            from PIL import Image, ImageDraw
        except ImportError:  # labels are decoration; frames stay usable without Pillow
            return frame
        img = Image.fromarray(frame)
        draw = ImageDraw.Draw(img)
        for j, label in enumerate(labels):
            draw.text((j * size + 3 * width, 3 * width), str(label), fill=(60, 60, 60))
        return np.asarray(img)
