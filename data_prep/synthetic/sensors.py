"""Inertial sensors on the segments: placement, soft-tissue wobble, band limit, noise, saturation.

Accelerometer = specific force in the sensor frame, f = R_ws^T (a + g e_z) with a the sensor's
acceleration in the world (m/s^2; +9.81 along the sensor axis that points up when still).
Gyroscope = angular velocity of the sensor frame, in the sensor frame (rad/s).

Sensor frame at the nominal mount: z = skin normal (outward), y = along the segment towards its
proximal end (the foot: towards the toes), x = y cross z. Each subject gets its own placement
(offset along / around the segment) and misalignment (a random tilt plus a rotation about the
skin normal, i.e. the strap), kept across that subject's trials. Magnitudes and their sources
are listed in docs/synthetic_data.md.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from data_prep.synthetic.anthropometry import Body
from data_prep.synthetic.kinematics import (
  Kinematics,
  axis_angle_matrix,
  body_angular_velocity,
  mv,
  second_derivative,
)

G = 9.81

# MoVi site -> (segment, offset in the segment frame as fractions (of H/1.75 for the 'r' terms,
# of segment length for 'L' terms), skin normal, long axis). 'sgn' mirrors left / right.
SITE_SEGMENT = {
    'Hip': 'pelvis', 'Head': 'head', 'Spine1': 'torso',
    'RightUpLeg': 'r_thigh', 'RightLeg': 'r_shank', 'RightFoot': 'r_foot',
    'LeftUpLeg': 'l_thigh', 'LeftLeg': 'l_shank', 'LeftFoot': 'l_foot',
    'RightShoulder': 'r_girdle', 'RightArm': 'r_upperarm', 'RightForeArm': 'r_forearm',
    'RightHand': 'r_hand', 'LeftShoulder': 'l_girdle', 'LeftArm': 'l_upperarm',
    'LeftForeArm': 'l_forearm', 'LeftHand': 'l_hand',
}

# Natural frequency (Hz) of the sensor-on-soft-tissue oscillator, by segment kind.
STA_FREQ_HZ = {'pelvis': 12.0, 'torso': 12.0, 'head': 25.0, 'girdle': 15.0, 'upperarm': 14.0,
               'forearm': 18.0, 'hand': 30.0, 'thigh': 13.0, 'shank': 18.0, 'foot': 30.0}


def _kind(seg: str) -> str:
  return seg[2:] if seg[:2] in ('r_', 'l_') else seg


def nominal_mount(site: str, body: Body) -> tuple[np.ndarray, np.ndarray]:
  """(offset [3] m in the segment frame from its origin, R [3,3] sensor axes in segment frame)."""
  if site not in SITE_SEGMENT:
    raise ValueError(f'unknown IMU site {site!r}; known: {sorted(SITE_SEGMENT)}')
  seg = SITE_SEGMENT[site]
  L, k = body.length, body.height_m / 1.75
  sgn = -1.0 if site.startswith('Left') else 1.0
  kind = _kind(seg)
  up = np.array([0.0, 0.0, 1.0])
  if kind == 'pelvis':
    off, n, ln = np.array([0, -0.09 * k, 0.6 * L['pelvis']]), np.array([0, -1.0, 0]), up
  elif kind == 'torso':
    off, n, ln = np.array([0, -0.10 * k, 0.6 * L['torso']]), np.array([0, -1.0, 0]), up
  elif kind == 'head':
    off, n, ln = np.array([0, -0.09 * k, 0.55 * L['head']]), np.array([0, -1.0, 0]), up
  elif kind == 'girdle':
    off = np.array([-sgn * 0.03 * k, -0.07 * k, 0.04 * k])
    n, ln = np.array([0, -0.6, 0.8]), np.array([sgn, 0.0, 0.0])
  elif kind == 'foot':
    off = np.array([0, 0.45 * L['foot'] - L['heel_to_ankle'], -0.25 * L['ankle_height']])
    n, ln = up, np.array([0, 1.0, 0])
  else:
    depth = {'upperarm': 0.045, 'forearm': 0.03, 'hand': 0.015, 'thigh': 0.075, 'shank': 0.045}
    along = {'upperarm': 0.5, 'forearm': 0.65, 'hand': 0.3, 'thigh': 0.45, 'shank': 0.4}
    off = np.array([sgn * depth[kind] * k, 0.0, -along[kind] * L[kind]])
    n, ln = np.array([sgn, 0.0, 0.0]), up
  z = n / np.linalg.norm(n)
  y = ln - (ln @ z) * z
  y /= np.linalg.norm(y)
  return off.astype(np.float64), np.stack([np.cross(y, z), y, z], -1)


@dataclasses.dataclass
class Mount:
  """One subject's IMU on one site."""

  site: str
  segment: str
  offset: np.ndarray       # m, segment frame
  rot: np.ndarray          # sensor axes in the segment frame (columns)
  sta_hz: float            # soft-tissue natural frequency
  sta_zeta: float          # soft-tissue damping ratio
  acc_bias: np.ndarray     # m/s^2
  gyr_bias: np.ndarray     # rad/s
  acc_scale: np.ndarray
  gyr_scale: np.ndarray


@dataclasses.dataclass(frozen=True)
class SensorSpec:
  """Sensor error model (defaults: a typical 16-bit MEMS IMU; see docs for sources)."""

  acc_range: float = 16 * G               # +-16 g
  gyr_range: float = np.deg2rad(2000.0)   # +-2000 deg/s
  bits: int = 16
  acc_noise_density: float = 150e-6 * G   # m/s^2/sqrt(Hz)
  gyr_noise_density: float = np.deg2rad(0.01)  # rad/s/sqrt(Hz)
  acc_bias_sd: float = 0.08               # m/s^2, per subject session
  gyr_bias_sd: float = np.deg2rad(0.5)
  scale_sd: float = 0.01
  offset_sd: float = 0.012                # m, placement along / around the segment
  tilt_sd_deg: float = 4.0                # misalignment tilt
  strap_sd_deg: float = 8.0               # rotation about the skin normal
  sta_zeta: tuple[float, float] = (0.2, 0.45)
  soft_tissue: bool = True
  noise: bool = True

  def ideal(self) -> SensorSpec:
    """No placement error, soft tissue, noise, bias or scale error (for physics tests)."""
    return dataclasses.replace(self, acc_bias_sd=0.0, gyr_bias_sd=0.0, scale_sd=0.0,
                               offset_sd=0.0, tilt_sd_deg=0.0, strap_sd_deg=0.0,
                               soft_tissue=False, noise=False)


DEFAULT_SPEC = SensorSpec()


def sample_mounts(sites, body: Body, rng: np.random.Generator,
                  spec: SensorSpec = DEFAULT_SPEC) -> list[Mount]:
  """Per-subject placement and sensor errors for each site."""
  bmi = body.mass_kg / body.height_m ** 2
  mounts = []
  for site in sites:
    off, rot = nominal_mount(site, body)
    off = off + rng.normal(0.0, spec.offset_sd, 3)
    axis = rng.normal(size=3)
    tilt = axis_angle_matrix(axis, np.deg2rad(rng.normal(0.0, spec.tilt_sd_deg)))
    strap = axis_angle_matrix(np.array([0.0, 0.0, 1.0]),
                              np.deg2rad(rng.normal(0.0, spec.strap_sd_deg)))
    seg = SITE_SEGMENT[site]
    f_n = STA_FREQ_HZ[_kind(seg)] * np.sqrt(23.0 / bmi) * rng.uniform(0.85, 1.15)
    mounts.append(Mount(
        site=site, segment=seg, offset=off, rot=tilt @ rot @ strap, sta_hz=float(f_n),
        sta_zeta=float(rng.uniform(*spec.sta_zeta)),
        acc_bias=rng.normal(0.0, spec.acc_bias_sd, 3),
        gyr_bias=rng.normal(0.0, spec.gyr_bias_sd, 3),
        acc_scale=1 + rng.normal(0.0, spec.scale_sd, 3),
        gyr_scale=1 + rng.normal(0.0, spec.scale_sd, 3)))
  return mounts


def soft_tissue(acc: np.ndarray, fs: float, f_n: float, zeta: float) -> np.ndarray:
  """Sensor-on-tissue oscillator driven by the bone's acceleration (causal, per axis).

  The sensor mass sits on a spring-damper attached to the bone: A_s / A_b =
  (2 zeta w s + w^2) / (s^2 + 2 zeta w s + w^2), discretised by the bilinear transform (w is
  pre-warped so the resonance stays at f_n). A sharp impact then rings at f_n, decaying with zeta.
  """
  b, a = _sta_coefficients(float(fs), float(f_n), float(zeta))
  from scipy import signal as sps  # noqa: PLC0415 (scipy: ~1.5 s to import; loaded where used)
  return sps.lfilter(b, a, acc, axis=0)


@functools.lru_cache(maxsize=4096)
def _sta_coefficients(fs: float, f_n: float, zeta: float) -> tuple[np.ndarray, np.ndarray]:
  w = 2 * fs * np.tan(np.pi * f_n / fs)
  from scipy import signal as sps  # noqa: PLC0415 (scipy: ~1.5 s to import; loaded where used)
  return sps.bilinear([2 * zeta * w, w * w], [1.0, 2 * zeta * w, w * w], fs)


def true_imu(kin: Kinematics, mounts: list[Mount], soft: bool = True
             ) -> tuple[np.ndarray, np.ndarray]:
  """Noise-free specific force and angular velocity [S, T, 3] at the internal rate."""
  fs = 1.0 / kin.dt
  omega_cache: dict[str, np.ndarray] = {}
  accs, gyrs = [], []
  for m in mounts:
    r_seg = kin.rot[m.segment]
    pos = kin.origin[m.segment] + mv(r_seg, m.offset)
    a = second_derivative(pos, kin.dt)
    if soft:
      a = soft_tissue(a, fs, m.sta_hz, m.sta_zeta)
    a[:, 2] += G
    r_ws = r_seg @ m.rot
    accs.append(np.einsum('tji,tj->ti', r_ws, a))
    if m.segment not in omega_cache:
      omega_cache[m.segment] = body_angular_velocity(r_seg, kin.dt)
    gyrs.append(omega_cache[m.segment] @ m.rot)
  return np.stack(accs), np.stack(gyrs)


def measure(acc: np.ndarray, gyr: np.ndarray, mounts: list[Mount], fs_int: float, q: int,
            rng: np.random.Generator, spec: SensorSpec = DEFAULT_SPEC
            ) -> tuple[np.ndarray, np.ndarray]:
  """Band-limit and decimate by q (FIR anti-alias, zero phase), then sensor errors, float32."""
  if q > 1:
    from scipy import signal as sps  # noqa: PLC0415 (scipy: ~1.5 s to import; loaded where used)
    acc = sps.decimate(acc, q, ftype='fir', axis=1, zero_phase=True)
    gyr = sps.decimate(gyr, q, ftype='fir', axis=1, zero_phase=True)
  fs = fs_int / q
  if spec.noise:
    bias_a = np.stack([m.acc_bias for m in mounts])[:, None]
    bias_g = np.stack([m.gyr_bias for m in mounts])[:, None]
    sc_a = np.stack([m.acc_scale for m in mounts])[:, None]
    sc_g = np.stack([m.gyr_scale for m in mounts])[:, None]
    acc = acc * sc_a + bias_a + rng.normal(0, spec.acc_noise_density * np.sqrt(fs / 2), acc.shape)
    gyr = gyr * sc_g + bias_g + rng.normal(0, spec.gyr_noise_density * np.sqrt(fs / 2), gyr.shape)
  lsb_a = 2 * spec.acc_range / 2 ** spec.bits
  lsb_g = 2 * spec.gyr_range / 2 ** spec.bits
  acc = np.round(np.clip(acc, -spec.acc_range, spec.acc_range) / lsb_a) * lsb_a
  gyr = np.round(np.clip(gyr, -spec.gyr_range, spec.gyr_range) / lsb_g) * lsb_g
  return acc.astype(np.float32), gyr.astype(np.float32)
