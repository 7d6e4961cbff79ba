"""SoundFonts by name: where each is found (Debian packages, pretty_midi) and how to get it.

`resolve_soundfont` turns a registry name or a path into an existing file, or says in one line what
to install; `available_soundfonts` is every registered font present on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MissingInput

# name -> (candidate paths, how to get it)
SOUNDFONTS: dict[str, tuple[list[str], str]] = {
    "fluidr3_gm": (["/usr/share/sounds/sf2/FluidR3_GM.sf2"], "apt-get install fluid-soundfont-gm"),
    "timgm6mb": ([str(Path(__import__("pretty_midi").__file__).parent / "TimGM6mb.sf2"),
                  "/usr/share/sounds/sf2/TimGM6mb.sf2"], "pip install pretty_midi (ships TimGM6mb.sf2)"),
    "musescore": (["/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "/usr/share/sounds/sf3/MuseScore_General.sf3"],
                  "apt-get install musescore-general-soundfont-small"),
    "fluidr3_mono": (["/usr/share/sounds/sf3/FluidR3Mono_GM.sf3"], "apt-get install fluidr3mono-gm-soundfont"),
    # The paper's figures use the Yamaha C5 Salamander grand; no registry ships it. Put the .sf2
    # at this path or pass its path as `soundfont`.
    "yamaha_c5": ([os.path.expanduser("~/.local/share/soundfonts/Yamaha-C5-Salamander-JNv5.1.sf2"),
                   "data/soundfonts/Yamaha-C5-Salamander-JNv5.1.sf2"],
                  "download the Salamander Yamaha C5 SoundFont on a connected machine and copy it to data/soundfonts/"),
}


class SoundFontNotFound(MissingInput):
    """A SoundFont that is not installed, not a file, or that FluidSynth cannot load."""


def resolve_soundfont(name_or_path: str) -> str:
    """A registry name or a path -> an existing file path; a clear error otherwise."""
    if name_or_path in SOUNDFONTS:
        candidates, how = SOUNDFONTS[name_or_path]
        for c in candidates:
            if Path(c).exists():
                return str(Path(c).resolve())
        raise SoundFontNotFound(
            f"SoundFont {name_or_path!r} not found (looked in {candidates}). Get it with: {how}; "
            f"or set the config key `soundfont` to another name ({', '.join(SOUNDFONTS)}) or a .sf2/.sf3 path.")
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in {".sf2", ".sf3"} and path.exists():
        return str(path.resolve())
    raise SoundFontNotFound(
        f"SoundFont {name_or_path!r} is neither a registry name ({', '.join(SOUNDFONTS)}) nor an existing .sf2/.sf3 file; "
        "set the config key `soundfont`.")


def soundfont_identity(name_or_path: str) -> dict:
    """What a cache key records of a SoundFont: its file's name and size, not its path (pretty_midi's
    copy of TimGM6mb lives in each checkout's virtual environment: the same font, another path)."""
    path = Path(resolve_soundfont(name_or_path))
    return {"file": path.name, "bytes": path.stat().st_size}


def available_soundfonts() -> dict[str, str]:
    found = {}
    for name in SOUNDFONTS:
        try:
            found[name] = resolve_soundfont(name)
        except SoundFontNotFound:
            pass
    return found
