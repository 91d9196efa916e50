"""See and export the motion: schematic previews (MP4 with sound, GIF, PNG) and plots.

Needs the ``viz`` extra (``pip install 'unils[viz]'``: Pillow, imageio-ffmpeg, matplotlib) for drawing and
writing; importing this package does not, and [`speech_activity`][unils.viz.activity.speech_activity] never
does.

Example:
    ```python
    from unils.viz import render_preview

    render_preview([me, you], "talk.mp4", audio=["me.wav", "you.wav"])  # me, you: Motions
    ```
"""

from __future__ import annotations

from .activity import frame_energy_db, speech_activity
from .arkit_plot import plot_arkit
from .avatar import CueMap, FaceCues, FrameRenderer, SchematicRenderer, face_cues, output_frame_indices
from .plot import plot_motion
from .preview import (
    MOTION_SUFFIXES,
    PreviewResult,
    load_motion_file,
    plot_from_files,
    preview_from_files,
    render_preview,
)
from .video import mix_audio, write_gif, write_mp4, write_png, write_video

__all__ = [
    "MOTION_SUFFIXES",
    "CueMap",
    "FaceCues",
    "FrameRenderer",
    "PreviewResult",
    "SchematicRenderer",
    "face_cues",
    "frame_energy_db",
    "load_motion_file",
    "mix_audio",
    "output_frame_indices",
    "plot_arkit",
    "plot_from_files",
    "plot_motion",
    "preview_from_files",
    "render_preview",
    "speech_activity",
    "write_gif",
    "write_mp4",
    "write_png",
    "write_video",
]
