"""The sampling rate from the signals themselves: the accelerometer and gyroscope agree at one rate.

Physics: over a stretch of movement the specific force a sensor measures, turned into the frame
it had at the start of the stretch, averages to gravity (the sensor's own still reading, about
9.81 m/s^2): the body's own acceleration averages to its change of velocity over the stretch,
about zero over whole gait cycles. Turning the samples takes the gyroscope integrated over time,
so it takes the rate: integrated at half the true rate, the gyroscope turns the sensor twice as
far as it went, the gravity direction is smeared and the average falls short; at twice the rate
it turns it half as far, the body's acceleration no longer cancels and the average overshoots.
``estimate_rate`` scans candidate rates (1/8 to 8 times the declared one) for where the average
crosses gravity, in windows of two periods of the gyro magnitude (any gait's velocity repeats
then; 2 s at the declared rate where there is no clear period), and checks a second signature:
windows half a window apart find the same gravity direction once turned by the gyro between
them. No declared rate enters the estimate, so it tells 1x from 2x and 3x. What it cannot see it
says: a sensor that barely turns (a lower back walking: halving or doubling the rate moves the
average by under 0.1 m/s^2), a still recording, acc and gyr that are not one sensor's axes.

Measured on real walking: the 116 IPOL foot recordings (100 Hz) give 85-103 Hz, verified at 100
in all 116, contradicted at 50 and 200 in 230 of 232 (2 undecided, none wrong); their 58 lower
back recordings are undecided at every rate; the scikit-kinematics shank (120 Hz) gives 118 Hz.
Synthetic shanks, feet, thighs and forearms walking, jogging and running: 91-106 Hz at 100 Hz
where decided, never contradicted at the true rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from data_prep import preprocess

G = preprocess.G
SCALES = np.exp(np.linspace(np.log(1 / 8), np.log(8), 21))  # candidate rate / declared rate
MIN_SENSITIVITY = 0.3   # m/s^2 the average must fall short at half the estimate, overshoot at twice
MOVING_RAD_S = 0.5      # mean |gyr| of a window that counts as movement
MAX_WINDOWS = 24        # evenly spread moving windows (the cost is linear in them)
MAX_ANGLE_DEG = 12.0    # overlapping windows agree on gravity this well (real feet: up to 8.3)
CONSISTENCY = 1.5       # ... and this many times better than at half the estimate
AGREE = 1.35            # estimate / declared within [1 / AGREE, AGREE]: the rate is confirmed
DISAGREE = 1.5          # outside [1 / DISAGREE, DISAGREE]: the rate is contradicted


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
  w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
  return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                   w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2],
                  -1)


def _qexp(rotvec: np.ndarray) -> np.ndarray:
  """Unit quaternions (w, x, y, z) of rotation vectors."""
  a = np.linalg.norm(rotvec, axis=-1, keepdims=True)
  s = np.where(a > 1e-12, np.sin(a / 2) / np.maximum(a, 1e-12), 0.5)
  return np.concatenate([np.cos(a / 2), rotvec * s], -1)


def _prefix_product(q: np.ndarray) -> np.ndarray:
  """Inclusive running quaternion product along axis -2, in log2(n) vectorised steps."""
  q = q.copy()
  k = 1
  while k < q.shape[-2]:
    q[..., k:, :] = _qmul(q[..., :-k, :], q[..., k:, :])
    k *= 2
  return q


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
  qv = np.concatenate([np.zeros(v.shape[:-1] + (1,)), v], -1)
  return _qmul(_qmul(q, qv), q * np.array([1.0, -1.0, -1.0, -1.0]))[..., 1:]


def period_samples(gyr: np.ndarray) -> tuple[int, float]:
  """(lag, correlation) of the gyro magnitude's dominant period in samples: the highest
  autocorrelation peak after its first zero crossing, up to a third of the recording."""
  g = np.linalg.norm(np.asarray(gyr, np.float64), axis=-1)
  g = g - g.mean()
  n = len(g)
  if n < 30 or not np.any(g):
    return 0, 0.0
  spec = np.fft.rfft(g, 2 * n)
  ac = np.fft.irfft(spec * np.conj(spec))[:n]
  ac = ac / ac[0] * n / (n - np.arange(n))
  neg = np.flatnonzero(ac[:n // 3] < 0)
  if not neg.size:
    return 0, 0.0
  lag = int(neg[0] + np.argmax(ac[neg[0]:n // 3]))
  return lag, float(ac[lag])


@dataclasses.dataclass
class RateEstimate:
  """What one sensor's acc and gyr say about the rate (``estimate_hz`` None: nothing)."""

  estimate_hz: float | None
  sensitivity: float   # m/s^2: the lesser of the shortfall at half the rate, overshoot at twice
  windows: int
  why: str = ''
  angle_deg: float | None = None  # median disagreement of overlapping windows' gravity

  def to_json(self) -> dict[str, object]:
    return {'estimate_hz': None if self.estimate_hz is None else round(self.estimate_hz, 2),
            'sensitivity_m_s2': round(float(self.sensitivity), 3), 'windows': self.windows,
            **({'angle_deg': round(self.angle_deg, 2)} if self.angle_deg is not None else {}),
            **({'why': self.why} if self.why else {})}


def gravity_reading(acc: np.ndarray, declared_hz: float) -> float:
  """|acc| of the stillest second (the sensor's own 9.81: scale errors of a few % would shift the
  crossing), or G where nothing is still (|acc| varying by 5 % or more)."""
  s0, s1, sd = preprocess.still_segment(acc, declared_hz, 1.0)
  mag = float(np.median(np.linalg.norm(acc[s0:s1], axis=-1)))
  return mag if sd < 0.05 * mag and abs(mag / G - 1) < 0.2 else G


def estimate_rate(acc: np.ndarray, gyr: np.ndarray, declared_hz: float) -> RateEstimate:
  """The rate at which ``gyr`` [T, 3] (rad/s) turns ``acc`` [T, 3] (m/s^2, same sensor axes)
  into a constant gravity. ``declared_hz`` only sets the fallback window (2 s), the still second
  and the scan range (1/8 to 8 times it).

  Two signatures of gravity, both needed: (1) the average turned acceleration falls from above
  the sensor's gravity reading to below it at the estimate, steadily, by at least
  MIN_SENSITIVITY at half and twice it; (2) the gravity directions that windows half a window
  apart find agree once turned by the gyro between their starts (within MAX_ANGLE_DEG), better
  by CONSISTENCY than at half the estimate (where the gyro turns them twice as far; at twice
  the estimate it turns them half as far, and no turn at all agrees trivially).
  """
  acc = np.asarray(acc, np.float64)
  gyr = np.asarray(gyr, np.float64)
  lag, corr = period_samples(gyr)
  win = 2 * lag if corr >= 0.3 and lag >= 5 else int(round(2 * declared_hz))
  hop = win // 2
  if len(acc) < win + hop or hop < 5:
    return RateEstimate(None, 0.0, 0, f'too short ({len(acc)} samples) for {win}-sample windows')
  starts = np.arange(0, len(acc) - win - hop + 1, hop)
  cum = np.r_[0.0, np.cumsum(np.linalg.norm(gyr, axis=-1))]

  def moving(st):
    return (cum[st + win] - cum[st]) / win > MOVING_RAD_S
  starts = starts[moving(starts) & moving(starts + hop)]
  if len(starts) < 3:
    return RateEstimate(None, 0.0, len(starts), f'too little rotation (mean |gyr| over '
                        f'{MOVING_RAD_S} rad/s in {len(starts)} pairs of {win}-sample windows)')
  starts = starts[np.linspace(0, len(starts) - 1, min(len(starts), MAX_WINDOWS)).astype(int)]
  n = len(starts)
  idx = np.concatenate([starts, starts + hop])[:, None] + np.arange(win)
  a, g = acc[idx], gyr[idx]
  first = np.broadcast_to([1.0, 0.0, 0.0, 0.0], (2 * n, 1, 4))
  norms, angles = [], []
  for s in SCALES:  # one vectorised pass per candidate rate
    q = _prefix_product(np.concatenate([first, _qexp(g[:, :-1] / (declared_hz * s))], 1))
    m = _rotate(q, a).mean(1)  # gravity in each window's start frame, if s is right
    norms.append(np.linalg.norm(m, axis=-1))
    ahead = _rotate(q[:n, hop] * np.array([1.0, -1.0, -1.0, -1.0]), m[:n])  # ... moved on
    cos = (ahead * m[n:]).sum(-1) / np.linalg.norm(ahead, axis=-1) / np.linalg.norm(m[n:], axis=-1)
    angles.append(np.degrees(np.median(np.arccos(np.clip(cos, -1.0, 1.0)))))
  # short of the sensor's gravity (+) or over it (-), per candidate rate
  d = gravity_reading(acc, declared_hz) - np.median(np.array(norms), axis=1)
  cross = np.flatnonzero((d[:-1] > 0) & (d[1:] <= 0))
  if len(cross) != 1:
    return RateEstimate(None, 0.0, n,
                        'the turned acceleration never settles on gravity (no body movement, '
                        "or acc and gyr columns that are not the same sensor's axes)"
                        if not len(cross) else f'{len(cross)} candidate rates')
  i = int(cross[0])
  ls = np.log(SCALES)
  est = float(np.exp(ls[i] + (ls[i + 1] - ls[i]) * d[i] / (d[i] - d[i + 1])))
  if not SCALES[0] <= est / 2 < est * 2 <= SCALES[-1]:
    return RateEstimate(None, 0.0, n, f'{est * declared_hz:.0f} Hz, too near the edge of the '
                        f'{SCALES[0] * declared_hz:g}-{SCALES[-1] * declared_hz:g} Hz scan')
  near = d[(SCALES >= est / 2) & (SCALES <= est * 2)]
  if np.any(np.diff(near) > 0.1):  # gravity's signature falls steadily; a wobble is not it
    return RateEstimate(None, 0.0, n, 'the turned acceleration does not fall steadily through '
                        'gravity (body accelerations too large for the gravity signature)')
  d_lo, d_hi = np.interp(np.log([est / 2, est * 2]), ls, d)
  sens = float(min(d_lo, -d_hi))
  if sens < MIN_SENSITIVITY:
    return RateEstimate(None, sens, n, f'too little turning to tell rates apart (halving or '
                        f'doubling {est * declared_hz:.0f} Hz moves the turned acceleration by '
                        f'only {sens:.2f} m/s^2, under {MIN_SENSITIVITY:g})')
  ang = np.interp(np.log([est, est / 2, est * 2]), ls, np.array(angles))
  if ang[0] > MAX_ANGLE_DEG or ang[0] > ang[1] / CONSISTENCY:
    return RateEstimate(None, 0.0, n, f'at {est * declared_hz:.0f} Hz the gravity directions of '
                        f'overlapping windows disagree by {ang[0]:.1f} deg (at half the rate: '
                        f'{ang[1]:.1f} deg): acc and gyr do not move together as one sensor\'s')
  return RateEstimate(est * declared_hz, sens, n, angle_deg=float(ang[0]))


def _ratio_words(r: float) -> str:
  for k in (2, 3, 4):
    if abs(r * k - 1) < 0.2:
      return f'about 1/{k} of the declared rate'
    if abs(r / k - 1) < 0.2:
      return f'about {k}x the declared rate'
  return f'{r:.2f}x the declared rate'


def check_declared_rate(acc: np.ndarray, gyr: np.ndarray, declared_hz: float,
                        sites: Sequence[str]) -> tuple[str, str, dict[str, dict]]:
  """(verdict, what the data say, per-site figures) of a declared rate.

  ``acc``, ``gyr``: [site, T, 3] in m/s^2 and rad/s. Verdict 'verified' (every site that can
  tell agrees within AGREE, and one can), 'contradicted' (a site that can tell puts the rate
  outside DISAGREE: the text gives its estimate) or 'undecided'.
  """
  est = {n: estimate_rate(acc[i], gyr[i], declared_hz) for i, n in enumerate(sites)}
  says, verdicts = [], []
  for n, e in est.items():
    if e.estimate_hz is None:
      says.append(f'site {n}: {e.why}')
      continue
    r = e.estimate_hz / declared_hz
    v = ('verified' if 1 / AGREE <= r <= AGREE else
         'contradicted' if not 1 / DISAGREE <= r <= DISAGREE else 'undecided')
    verdicts.append(v)
    says.append(f'site {n}: {e.estimate_hz:.0f} Hz' + ('' if v == 'verified' else
                                                        f', {_ratio_words(r)}'))
  verdict = ('contradicted' if 'contradicted' in verdicts else
             'verified' if verdicts and set(verdicts) == {'verified'} else 'undecided')
  return verdict, '; '.join(says), {n: e.to_json() for n, e in est.items()}
