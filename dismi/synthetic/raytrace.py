"""Ray tracing the offline Shapes3D scene: each geometry (scale, shape, orientation) into colour-free layers.

The scene (docs/facts.md, "Dataset"): a light-blue sky band above the walls of a square room, a floor,
and one object (box, sphere, cylinder, capsule) standing on the floor at the centre, sized by `scale`.
The camera orbits the object by `orientation` degrees: at 0 it faces the back wall; turning it tilts the
wall edges in perspective, and past about 13 degrees either way the corner where the back wall meets a
side wall comes into view, moving in from the image's edge (as in the real images, which show that
corner on either side but never at the centre). A headlight, a shadow-casting key light from above and a
fill light from the left give diffuse shading with a soft dark shadow on the floor; colours are fully
saturated HSV hues, lit and clipped per channel the way the real images burn out; 4x4 supersampling
antialiases every edge.

Colour does not change geometry: each of the 8 scales x 4 shapes x 15 orientations = 480 geometries is
ray traced once, into layers that say per pixel how much sky, and how much of each region's colour shows
for each possible channel value (`geometry_layers`). dismi.synthetic.compose turns layers and hues into images.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from dismi.data.factors import VALUES

IMAGE_SIZE = 64
SKY_RGB = np.array([153.0, 226.0, 249.0])  # the sky band of the real images

# Scene geometry, fitted to the real images' wall edges (top edge and floor line of 12 reference
# images, 0.46 px rms): a square room centred on the object, a level camera orbiting at _CAM_DIST,
# field of view about 46 degrees (MuJoCo's default is 45). At orientation 0 the camera faces the back
# wall squarely; at +-30 degrees a corner comes into view on one side.
_FOCAL = 76.0  # pixels
_CAM_DIST = 3.4
_CAM_HEIGHT = 0.775
_CAM_PITCH = -math.atan(1.25 / _FOCAL)  # the horizon sits 1.25 px below the centre
_ROOM_HALF = 4.2  # walls at x = +-4.2 and z = +-4.2
_WALL_HEIGHT = 2.36
# Objects at scale 1 (scale multiplies every length), measured on the reference (its large objects
# are scale 1.25, its small ones 0.75). Box: cube side; sphere: radius; cylinder: radius, height;
# capsule: radius, total height.
_BOX_SIDE = 0.87
_SPHERE_RADIUS = 0.5
_CYL_RADIUS, _CYL_HEIGHT = 0.44, 0.92
_CAPS_RADIUS, _CAPS_HEIGHT = 0.32, 1.4
# Lights. A light's intensity multiplies a surface's colour and the result clips per channel at 255,
# as a camera would: the brightly lit floor of the real images burns out towards yellow or white
# (a hue 0.2 floor reads (255, 255, 0) near the light). The lights turn with the camera, as in the
# real images, where the left of the floor is always the brighter and the shadow always falls to the
# right and towards the camera. Three lights:
# - headlight along the view (MuJoCo's headlight): walls facing the camera bright, walls seen at a
#   grazing angle dark, and the faces of the object that face the camera;
# - key: a directional light from high up, behind and a little left of the object, jittered over a
#   small cone so the shadow's edge is soft; the only light that casts a shadow, and the one whose
#   highlight shows on the object;
# - fill: a point light low on the left, falling off as cos / distance^2: the left of the floor and
#   of the object burn brighter than the right.
# Directions and positions are given at orientation 0 (camera on +z looking at -z).
_KEY_DIR = np.array([-0.2, 1.0, -0.5])
_KEY_CONE = 0.06  # radians: spread of the key light's directions
_FILL_POS = np.array([-3.5, 2.5, 0.5])
_FILL_REF = 3.2  # distance at which the fill's falloff is 1
_GAINS = {  # surface: (ambient, headlight, key, fill, specular)
    "wall": (0.2, 0.9, 0.0, 0.0, 0.0),
    "floor": (0.16, 0.0, 0.76, 0.58, 0.0),
    "object": (0.2, 0.72, 0.75, 0.15, 0.12),
}
_SHININESS = 24.0
_SS = 4  # supersampling: _SS x _SS samples per pixel
_EPS = 1e-6

# What a sample of a pixel sees.
SKY, WALL, FLOOR, OBJECT = range(4)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _sample_offsets() -> np.ndarray:
    """(_SS*_SS, 2) sub-pixel offsets in [0, 1): a regular grid, rotated so edges at any angle blend."""
    k = (np.arange(_SS) + 0.5) / _SS
    u, v = np.meshgrid(k, k, indexing="ij")
    u, v = u.reshape(-1) - 0.5, v.reshape(-1) - 0.5
    a = math.atan(0.5)
    return np.stack([np.cos(a) * u - np.sin(a) * v, np.sin(a) * u + np.cos(a) * v], axis=1) % 1.0


def _rot_y(phi: float, v: np.ndarray) -> np.ndarray:
    """Rotate points (..., 3) by phi radians about the vertical axis (the camera's orbit)."""
    c, s = math.cos(phi), math.sin(phi)
    return np.stack([c * v[..., 0] + s * v[..., 2], v[..., 1], -s * v[..., 0] + c * v[..., 2]], axis=-1)


def _key_dirs(orientation_deg: float) -> np.ndarray:
    """(_SS*_SS, 3) unit key-light directions (towards the light), one per sample, over a small cone."""
    n = _SS * _SS
    base = _unit(_KEY_DIR)
    a = _unit(np.cross(base, [0.0, 0.0, 1.0]))
    b = np.cross(base, a)
    i = np.arange(n)
    r = math.tan(_KEY_CONE) * np.sqrt((i + 0.5) / n)
    t = i * math.pi * (3.0 - math.sqrt(5.0))  # golden-angle spiral
    dirs = _unit(base + r[:, None] * (np.cos(t)[:, None] * a + np.sin(t)[:, None] * b))
    return _rot_y(math.radians(orientation_deg), dirs)


def _camera_frame(orientation_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eye, forward, right and up vectors of the camera at `orientation_deg` around the object."""
    phi = math.radians(orientation_deg)
    eye = np.array([_CAM_DIST * math.sin(phi), _CAM_HEIGHT, _CAM_DIST * math.cos(phi)])
    cp, sp = math.cos(_CAM_PITCH), math.sin(_CAM_PITCH)
    forward = np.array([-math.sin(phi) * cp, -sp, -math.cos(phi) * cp])
    right = np.array([math.cos(phi), 0.0, -math.sin(phi)])
    return eye, forward, right, np.cross(right, forward)


def _camera(orientation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Eye position (3,) and unit primary ray directions (64*64*_SS*_SS, 3), pixel-major, rows top down."""
    eye, forward, right, up = _camera_frame(orientation_deg)
    off = _sample_offsets()
    pix = np.arange(IMAGE_SIZE, dtype=np.float64)
    # (row, col, sample)
    x = (pix[None, :, None] + off[None, None, :, 0] - IMAGE_SIZE / 2) / _FOCAL
    y = (IMAGE_SIZE / 2 - (pix[:, None, None] + off[None, None, :, 1])) / _FOCAL
    x, y = np.broadcast_arrays(x, y)
    d = forward + x.reshape(-1, 1) * right + y.reshape(-1, 1) * up
    return eye, _unit(d)


def _object_params(shape: int, scale: float) -> tuple[np.ndarray, float]:
    """Bounding sphere (centre, radius) of the object."""
    if shape == 0:
        h, w = _BOX_SIDE * scale, _BOX_SIDE * scale * math.sqrt(2.0)
    elif shape == 1:
        h, w = 2 * _SPHERE_RADIUS * scale, 2 * _SPHERE_RADIUS * scale
    elif shape == 2:
        h, w = _CYL_HEIGHT * scale, 2 * _CYL_RADIUS * scale
    else:
        h, w = _CAPS_HEIGHT * scale, 2 * _CAPS_RADIUS * scale
    return np.array([0.0, h / 2, 0.0]), 0.5 * math.hypot(h, w) + 1e-3


def _sphere_hit(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
    """Nearest t > eps of unit rays o + t d on the sphere (c, r); inf when missed."""
    oc = o - c
    b = np.einsum("ij,ij->i", oc, d)
    disc = b * b - (np.einsum("ij,ij->i", oc, oc) - r * r)
    sq = np.sqrt(np.maximum(disc, 0.0))
    t = -b - sq
    t = np.where(t > _EPS, t, -b + sq)
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _side_hit(o: np.ndarray, d: np.ndarray, r: float, y0: float, y1: float) -> np.ndarray:
    """Nearest t > eps on the vertical cylinder x^2 + z^2 = r^2, y0 <= y <= y1 (outside only)."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    y = o[:, 1] + t * d[:, 1]
    ok = (disc >= 0) & (a > 1e-12) & (t > _EPS) & (y >= y0) & (y <= y1) & (c > 0)
    return np.where(ok, t, np.inf)


def _object_hit(o: np.ndarray, d: np.ndarray, shape: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Rays o + t d (o (n,3) or (3,), d (n,3) unit) against the object: t (n,) (inf = miss), normals (n,3)."""
    o = np.broadcast_to(o, d.shape)
    n = np.zeros_like(d)
    if shape == 0:  # box, faces aligned with the camera's frame at orientation 0
        half = _BOX_SIDE * scale / 2
        lo = np.array([-half, 0.0, -half])
        hi = np.array([half, 2 * half, half])
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - o) / d, (hi - o) / d
        tnear = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
        tfar = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2))
        t0, t1_ = tnear.max(axis=1), tfar.min(axis=1)
        t = np.where((t1_ >= t0) & (t0 > _EPS), t0, np.inf)
        axis = tnear.argmax(axis=1)
        rows = np.arange(len(d))
        n[rows, axis] = -np.sign(d[rows, axis])
        return t, n
    if shape == 1:  # sphere resting on the floor
        r = _SPHERE_RADIUS * scale
        c = np.array([0.0, r, 0.0])
        t = _sphere_hit(o, d, c, r)
        p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
        return t, (p - c) / r
    if shape == 2:  # cylinder: side and top cap
        r, h = _CYL_RADIUS * scale, _CYL_HEIGHT * scale
        ts = _side_hit(o, d, r, 0.0, h)
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = (h - o[:, 1]) / d[:, 1]
        pc = o + np.where(np.isfinite(tc), tc, 0.0)[:, None] * d
        tc = np.where((tc > _EPS) & (pc[:, 0] ** 2 + pc[:, 2] ** 2 <= r * r) & (o[:, 1] > h), tc, np.inf)
        t = np.minimum(ts, tc)
        p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
        side = np.stack([p[:, 0] / r, np.zeros(len(d)), p[:, 2] / r], axis=1)
        n = np.where((tc <= ts)[:, None], np.array([0.0, 1.0, 0.0]), side)
        return t, n
    # capsule: a cylinder between two hemispheres
    r, h = _CAPS_RADIUS * scale, _CAPS_HEIGHT * scale
    c0, c1 = np.array([0.0, r, 0.0]), np.array([0.0, h - r, 0.0])
    ts = _side_hit(o, d, r, r, h - r)
    t0 = _sphere_hit(o, d, c0, r)
    t1 = _sphere_hit(o, d, c1, r)
    t = np.minimum(ts, np.minimum(t0, t1))
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    axis_pt = np.zeros_like(p)
    axis_pt[:, 1] = np.clip(p[:, 1], r, h - r)
    return t, (p - axis_pt) / r


def _shade(
    p: np.ndarray,
    n: np.ndarray,
    view: np.ndarray,
    forward: np.ndarray,
    keys: np.ndarray,
    fill: np.ndarray,
    gains: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unshadowed light at points p (n, 3) with normals n seen along unit rays `view`.

    gains (n, 5) per point. Returns (light without the key, key part, specular)."""
    to_fill = fill - p
    dist = np.linalg.norm(to_fill, axis=1)
    to_fill /= dist[:, None]
    cos_fill = np.maximum(0.0, np.einsum("ij,ij->i", n, to_fill))
    base = (
        gains[:, 0] + gains[:, 1] * np.maximum(0.0, -(n @ forward)) + gains[:, 3] * cos_fill * (_FILL_REF / dist) ** 2
    )
    cos_key = np.einsum("ij,ij->i", n, keys)
    key = gains[:, 2] * np.maximum(0.0, cos_key)
    half = _unit(keys - view)
    spec = np.where(cos_key > 0, gains[:, 4] * np.maximum(0.0, np.einsum("ij,ij->i", n, half)) ** _SHININESS, 0.0)
    return base, key, spec


@lru_cache(maxsize=16)
def _room(orient: int) -> dict[str, np.ndarray]:
    """Primary rays of one orientation against the room (floor and four walls), unshadowed light."""
    eye, d = _camera(VALUES[5][orient])
    h = _ROOM_HALF
    # Inward normals and a point of each plane: floor, walls at x = -h, x = +h, z = -h, z = +h.
    normals = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    points = np.array([[0.0, 0.0, 0.0], [-h, 0.0, 0.0], [h, 0.0, 0.0], [0.0, 0.0, -h], [0.0, 0.0, h]])
    dn = d @ normals.T
    with np.errstate(divide="ignore"):
        tp = ((points - eye) * normals).sum(1)[None, :] / dn
    tp = np.where(dn < -1e-12, tp, np.inf)  # the room is convex: the ray leaves through one plane
    which = tp.argmin(axis=1)
    t = tp[np.arange(len(d)), which]
    p = eye + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    region = np.where(which == 0, FLOOR, WALL)
    region = np.where(~np.isfinite(t) | ((which > 0) & (p[:, 1] > _WALL_HEIGHT)), SKY, region)
    phi = math.radians(VALUES[5][orient])
    forward = _camera_frame(VALUES[5][orient])[1]
    keys = np.tile(_key_dirs(VALUES[5][orient]), (IMAGE_SIZE * IMAGE_SIZE, 1))  # each sample's key direction
    fill = _rot_y(phi, _FILL_POS)
    gains = np.array([_GAINS["floor"], _GAINS["wall"]])[(region != FLOOR).astype(int)]
    light, key, _ = _shade(p, normals[which], d, forward, keys, fill, gains)
    out = {
        "eye": eye,
        "d": d,
        "t": t,
        "p": p,
        "region": region,
        "light": light,
        "key": key,
        "keys": keys,
        "fill": fill,
        "forward": forward,
    }
    for v in out.values():
        v.setflags(write=False)
    return out


def _trace(scale: int, shape: int, orient: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sample of one geometry (class indices): region (SKY..OBJECT), diffuse light, specular."""
    room = _room(orient)
    s = float(VALUES[3][scale])
    d, eye = room["d"], room["eye"]
    region = room["region"].copy()
    light = room["light"] + room["key"]
    spec = np.zeros(len(d))

    # Object: only rays passing near its bounding sphere can hit it.
    c, rad = _object_params(shape, s)
    oc = c - eye
    proj = d @ oc
    near = np.flatnonzero(oc @ oc - proj * proj <= rad * rad)
    t_obj, n_obj = _object_hit(eye, d[near], shape, s)
    hit = np.isfinite(t_obj) & (t_obj < room["t"][near])
    idx, n_obj, t_obj = near[hit], n_obj[hit], t_obj[hit]
    p_obj = eye + t_obj[:, None] * d[idx]
    gains = np.broadcast_to(np.array(_GAINS["object"]), (len(idx), 5))
    base, key, sp = _shade(p_obj, n_obj, d[idx], room["forward"], room["keys"][idx], room["fill"], gains)
    region[idx] = OBJECT
    light[idx] = base + key
    spec[idx] = sp

    # Shadow: room points whose ray towards the key light meets the object lose the key light.
    cand = np.flatnonzero(((region == FLOOR) | (region == WALL)) & (room["key"] > 0))
    p, keys = room["p"][cand], room["keys"][cand]
    w = c - p
    proj = np.einsum("ij,ij->i", w, keys)
    close = (proj > 0) & (np.einsum("ij,ij->i", w, w) - proj * proj <= rad * rad)
    cand = cand[close]
    t_sh, _ = _object_hit(p[close], keys[close], shape, s)
    dark = cand[np.isfinite(t_sh)]
    light[dark] -= room["key"][dark]
    return region, light, spec


_LEVELS = np.arange(6) / 5.0  # every channel of an official hue's RGB is one of these (x 255)


@lru_cache(maxsize=64)
def geometry_layers(scale: int, shape: int, orient: int) -> tuple[np.ndarray, np.ndarray]:
    """One geometry (class indices) as colour-free layers, each pixel averaged over its samples.

    const (4096, 3): the colour that does not depend on any hue (sky, specular highlights), 0..255.
    layers (4, 6, 4096): layers[r, k] is how much a channel of value _LEVELS[k] (x 255) shows in
    region r: the mean over samples of [region == r] * min(light * _LEVELS[k], 1 - specular).
    A pixel's channel is const + sum over coloured regions of layers[r, k(channel of r's hue)] * 255.
    """
    region, light, spec = _trace(scale, shape, orient)
    n_pix, n_s = IMAGE_SIZE * IMAGE_SIZE, _SS * _SS
    const = ((region == SKY)[:, None] * SKY_RGB + spec[:, None] * 255.0).reshape(n_pix, n_s, 3).mean(1)
    cap = 1.0 - spec
    layers = np.zeros((4, len(_LEVELS), n_pix))
    for r in (WALL, FLOOR, OBJECT):
        on = region == r
        for k, level in enumerate(_LEVELS[1:], start=1):
            layers[r, k] = np.where(on, np.minimum(light * level, cap), 0.0).reshape(n_pix, n_s).mean(1)
    const.setflags(write=False)
    layers.setflags(write=False)
    return const, layers
