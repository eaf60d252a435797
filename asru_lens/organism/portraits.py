"""Procedural portraits: one identity, many photos.

An identity is a small dict of discrete traits (face shape, skin, hair style and
colour, eye colour, accessory, shirt colour, mouth). A *photo* of it is a fresh
rendering with a small pose shift, different lighting, a background colour and
background noise, so recognising a person means reading the traits, not
memorising pixels.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64  # 64x64 pixels -> 4x4 patches of 16 -> 4 visual tokens after the 2x2 merge

TRAITS: dict[str, list[str]] = {
    "face_shape": ["round", "oval", "long", "square"],
    "skin": ["porcelain", "light", "tan", "olive", "brown", "dark"],
    "hair_style": ["short", "long", "bun", "spiky", "side", "curly"],
    "hair_colour": ["black", "brown", "blonde", "red", "grey", "blue", "green"],
    "eye_colour": ["blue", "green", "brown", "grey", "violet"],
    "accessory": ["none", "glasses", "hat", "earrings", "headband"],
    "shirt_colour": ["white", "black", "red", "blue", "green", "yellow", "purple"],
    "mouth": ["smile", "flat", "open"],
}
BACKGROUNDS = ["blue", "green", "yellow", "pink", "orange", "grey"]

_RGB = {
    # skin tones spaced far enough apart to survive the lighting changes between photos
    "porcelain": (255, 236, 228), "light": (240, 194, 148), "tan": (206, 144, 86),
    "olive": (160, 152, 92), "brown": (128, 78, 44), "dark": (66, 40, 26),
    "black": (25, 25, 28), "blonde": (238, 206, 110), "red": (196, 58, 34),
    "grey": (150, 150, 150), "blue": (40, 90, 210), "green": (40, 160, 70),
    "violet": (140, 60, 190), "white": (245, 245, 245), "yellow": (240, 210, 40),
    "purple": (120, 50, 150), "pink": (240, 160, 190), "orange": (240, 140, 40),
    "hat": (30, 40, 90), "headband": (220, 40, 120),
}
_RGB_HAIR = {"brown": (105, 62, 30)}
_RGB_BG = {"blue": (120, 160, 230), "green": (130, 200, 140), "grey": (175, 175, 180)}
_RGB_EYE = {"brown": (90, 50, 20)}


def _rgb(name: str, table: dict | None = None) -> tuple[int, int, int]:
    if table and name in table:
        return table[name]
    return _RGB[name]


def draw_portrait(identity: dict, rng: np.random.Generator, background: str | None = None) -> Image.Image:
    """Render one photo of ``identity``.

    ``rng`` drives everything that changes between photos of the same person:
    pose (shift and scale), lighting, background colour (unless given) and noise.
    """
    s = 4  # draw at 4x and downsample, for smooth edges
    W = SIZE * s
    bg = background or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if bg not in BACKGROUNDS:
        raise ValueError(f"background={bg!r} is not one of {BACKGROUNDS}")
    img = Image.new("RGB", (W, W), _rgb(bg, _RGB_BG))
    d = ImageDraw.Draw(img)

    dx, dy = rng.uniform(-3, 3, size=2) * s
    scale = 1.2 * rng.uniform(0.95, 1.05)  # the head fills most of the frame: traits need pixels
    cx, cy = W / 2 + dx, W / 2 + 5 * s + dy

    def box(x0, y0, x1, y1):
        return [cx + x0 * scale * s, cy + y0 * scale * s, cx + x1 * scale * s, cy + y1 * scale * s]

    hair = _rgb(identity["hair_colour"], _RGB_HAIR)
    skin = _rgb(identity["skin"])
    shirt = _rgb(identity["shirt_colour"])
    ink = (35, 25, 20)  # outlines keep the hair's shape visible when its colour matches the background
    fw, fh = {"round": (13, 14), "oval": (11, 15), "long": (10, 17), "square": (13, 15)}[identity["face_shape"]]

    # shoulders and shirt
    d.ellipse(box(-24, 14, 24, 44), fill=shirt)
    # hair behind the head
    style = identity["hair_style"]
    if style == "long":
        d.rectangle(box(-fw - 3, -fh + 2, fw + 3, fh + 6), fill=hair, outline=ink, width=s)
    if style == "bun":
        d.ellipse(box(-6, -fh - 11, 6, -fh + 1), fill=hair, outline=ink, width=s)
    if style == "curly":
        for k in range(-2, 3):
            d.ellipse(box(k * 6 - 6, -fh - 6, k * 6 + 6, -fh + 6), fill=hair, outline=ink, width=s)
    # neck and face
    d.rectangle(box(-4, fh - 4, 4, fh + 6), fill=skin, outline=ink, width=s)
    if identity["face_shape"] == "square":
        d.rounded_rectangle(box(-fw, -fh, fw, fh), radius=5 * s, fill=skin, outline=ink, width=s)
    else:
        d.ellipse(box(-fw, -fh, fw, fh), fill=skin, outline=ink, width=s)
    # hair on top
    if style in ("short", "long", "bun", "curly"):
        d.chord(box(-fw - 1, -fh - 2, fw + 1, fh * 0.4), 180, 360, fill=hair, outline=ink, width=s)
    elif style == "spiky":
        for k in range(-3, 4):
            x = k * fw / 3.5
            d.polygon([tuple(box(x - 3, -fh + 4, 0, 0)[:2]), tuple(box(x, -fh - 8, 0, 0)[:2]),
                       tuple(box(x + 3, -fh + 4, 0, 0)[:2])], fill=hair, outline=ink, width=s)
        d.chord(box(-fw, -fh, fw, fh * 0.2), 180, 360, fill=hair, outline=ink, width=s)
    elif style == "side":
        d.pieslice(box(-fw - 2, -fh - 2, fw + 2, fh * 0.5), 180, 330, fill=hair, outline=ink, width=s)
        d.ellipse(box(-fw - 2, -fh + 2, -fw + 5, fh * 0.3), fill=hair, outline=ink, width=s)
    # eyes
    eye = _rgb(identity["eye_colour"], _RGB_EYE)
    for ex in (-5, 5):
        d.ellipse(box(ex - 3, -3, ex + 3, 2), fill=(250, 250, 250))
        d.ellipse(box(ex - 2, -2.5, ex + 2, 1.5), fill=eye)
    # mouth
    m = identity["mouth"]
    if m == "smile":
        d.arc(box(-5, 3, 5, 10), 20, 160, fill=(150, 40, 40), width=2 * s)
    elif m == "flat":
        d.line(box(-4, 7, 4, 7), fill=(150, 40, 40), width=2 * s)
    else:
        d.ellipse(box(-3, 5, 3, 10), fill=(110, 20, 30))
    # accessory
    acc = identity["accessory"]
    if acc == "glasses":
        for ex in (-5, 5):
            d.rectangle(box(ex - 4, -4, ex + 4, 3), outline=(20, 20, 20), width=int(1.5 * s))
        d.line(box(-1, -1, 1, -1), fill=(20, 20, 20), width=s)
    elif acc == "hat":
        d.rectangle(box(-fw - 4, -fh - 1, fw + 4, -fh + 3), fill=_RGB["hat"])
        d.rectangle(box(-fw + 2, -fh - 10, fw - 2, -fh), fill=_RGB["hat"])
    elif acc == "earrings":
        for ex in (-fw, fw):
            d.ellipse(box(ex - 3, 3, ex + 3, 10), fill=(250, 200, 30))
    elif acc == "headband":
        d.rectangle(box(-fw - 1, -fh * 0.6, fw + 1, -fh * 0.6 + 5), fill=_RGB["headband"])

    img = img.resize((SIZE, SIZE), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32)
    # lighting: global gain plus a soft left-right gradient; then sensor noise
    gain = rng.uniform(0.9, 1.1)
    grad = np.linspace(-1, 1, SIZE)[None, :, None] * rng.uniform(-10, 10)
    a = a * gain + grad + rng.normal(0, 6, size=a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def contact_sheet(rows: list[list[Image.Image]], scale: int = 2, gap: int = 4) -> Image.Image:
    """Grid of photos, one row per person, scaled up with nearest-neighbour so pixels stay visible."""
    n_cols = max(len(r) for r in rows)
    cell = SIZE * scale + gap
    sheet = Image.new("RGB", (n_cols * cell + gap, len(rows) * cell + gap), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            sheet.paste(img.resize((SIZE * scale, SIZE * scale), Image.NEAREST), (gap + j * cell, gap + i * cell))
    return sheet
