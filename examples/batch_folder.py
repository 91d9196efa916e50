"""Generate motion for every audio file of a folder (single-person), one .npz per file.

    python examples/batch_folder.py audio_dir/ out_dir/ [--model PATH_OR_REPO]
"""

import argparse
from pathlib import Path

from unils import AudioError, AudioFileError, UniLS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--model", default="demo", help="checkpoint folder, Hub repo id or bundled name")
    args = ap.parse_args()

    model = UniLS.from_pretrained(args.model)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(args.audio_dir).iterdir() if p.suffix.lower() in {".wav", ".flac", ".ogg"})
    for i, path in enumerate(files):
        try:
            motion = model.generate(path, seed=i)
        except (AudioError, AudioFileError) as exc:  # skip unusable files, keep going
            print(f"skip {path.name}: {exc}")
            continue
        motion.save(out / f"{path.stem}.npz")
        print(f"{path.name}: {motion}")


if __name__ == "__main__":
    main()
