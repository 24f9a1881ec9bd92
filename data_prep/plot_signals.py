"""Look at it: draw a few seconds of IMU signals (and, for synthetic data, vGRF and knee moment).

  python -m data_prep.plot_signals synthetic --out docs/img/synthetic_example.png
  python -m data_prep.plot_signals xsens ../shared/data/real_imu/walking_xsens_lowerLeg.txt \
      --out docs/img/real_xsens_shank.png

'synthetic' simulates one subject of the generator walking (right shank IMU, the force plates
and the lever-arm knee flexion moment); 'xsens' reads an Xsens MT Manager text export (the
real shank recording). Both are drawn in the body frame (x forward, y up, z right), so they can
be judged side by side: the synthetic lateral right-shank sensor's nominal frame is that frame
(docs/synthetic_data.md), and the real file is rotated with its axis map (``--axes``; the one
derived in docs/bring_your_own_data.md is the default, ``--axes=sensor`` keeps the raw frame).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data_prep import axes  # noqa: E402
from data_prep import gait_events as ge  # noqa: E402
from data_prep.readers import xsens  # noqa: E402

BODY_FRAME = 'body frame: x forward, y up, z right'
# The real shank file's map, derived in docs/bring_your_own_data.md (gravity on sensor -x).
XSENS_SHANK_AXES = 'forward=+y,up=-x,right=+z'


def _imu_axes(ax_acc, ax_gyr, t, acc, gyr, title):
  for k, c in enumerate('xyz'):
    ax_acc.plot(t, acc[:, k], lw=1, label=c)
    ax_gyr.plot(t, gyr[:, k], lw=1, label=c)
  ax_acc.set_ylabel('acc (m/s$^2$)')
  ax_gyr.set_ylabel('gyr (rad/s)')
  ax_acc.set_title(title)
  ax_acc.legend(loc='upper right', ncol=3, fontsize=8)


def plot_synthetic(out: str, seconds: float = 4.0, speed: float = 1.3, subject: int = 0,
                   seed: int = 0, rate: float = 100.0) -> str:
  """One synthetic subject walking: right-shank IMU, both feet's vGRF, right KFM."""
  from data_prep.synthetic import gait, generate, sensors
  sub = generate.subjects('plot', seed, subject + 1)[subject]
  q = generate.internal_factor(rate, generate.LABELLED_INTERNAL_HZ)
  rng = np.random.default_rng(seed)
  plan = gait.gait_plan(sub, 'walk', speed, seconds + 1.0, rate * q, rng)
  mounts = sensors.sample_mounts(('RightLeg',), sub.body, rng)
  sim = generate.simulate(sub, plan, mounts, rate, q, rng)
  w = sub.body.weight_n
  knee = ge.knee_moment_lever_arm(plan.grf['r'], plan.cop['r'], sim.kin.joints['r_knee'],
                                  sub.body.mass_kg, sub.body.height_m)
  i0, n_int = int(0.5 * rate * q), int(seconds * rate * q)
  k0, n_out = int(0.5 * rate), int(seconds * rate)
  t_out = np.arange(n_out) / rate
  t_int = np.arange(n_int) / (rate * q)
  fig, ax = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
  _imu_axes(ax[0], ax[1], t_out, sim.acc[0, k0:k0 + n_out], sim.gyr[0, k0:k0 + n_out],
            f'synthetic subject {subject}: walking {speed} m/s, right shank IMU at {rate:g} Hz '
            f'({sub.body.height_m:.2f} m, {sub.body.mass_kg:.0f} kg)\n'
            f'lateral mount, nominal {BODY_FRAME}')
  ax[2].plot(t_int, plan.grf['r'][i0:i0 + n_int, 2] / w, label='right')
  ax[2].plot(t_int, plan.grf['l'][i0:i0 + n_int, 2] / w, label='left')
  ax[2].set_ylabel('vGRF (BW)')
  ax[2].legend(loc='upper right', fontsize=8)
  ax[3].plot(t_int, knee[i0:i0 + n_int, 0])
  ax[3].axhline(0, color='k', lw=0.5)
  ax[3].set_ylabel('KFM (%BW·BH)')
  ax[3].set_xlabel('time (s)')
  fig.tight_layout()
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=90)
  plt.close(fig)
  return out


def parse_axes(spec: str) -> axes.AxisMap:
  """'forward=+y,up=-x,right=+z' -> AxisMap; 'sensor' -> the identity (raw sensor frame)."""
  if spec == 'sensor':
    return axes.SENSOR
  try:
    parts = dict(p.split('=') for p in spec.split(','))
  except ValueError:
    raise ValueError(f"--axes={spec!r}: expected 'forward=+y,up=-x,right=+z' or 'sensor'") from None
  return axes.from_spec(parts, f'--axes={spec}')


def plot_xsens(path: str, out: str, seconds: float = 4.0, start_s: float = 10.0,
               axis_map: str = XSENS_SHANK_AXES) -> str:
  """A stretch of a real Xsens recording (acc and gyr), rotated into the body frame."""
  e = xsens.read_xsens_txt(path)
  rate = e.sample_rate_hz
  m = parse_axes(axis_map)
  acc, gyr = m.apply(e.acc()), m.apply(e.gyr())
  k0 = int(start_s * rate)
  n = int(seconds * rate)
  if k0 + n > len(acc):
    raise ValueError(f'{path}: {len(acc) / rate:.1f} s recorded, asked for {start_s}+{seconds} s')
  t = np.arange(n) / rate
  frame = 'raw sensor frame' if axis_map == 'sensor' else f'{BODY_FRAME} (map {axis_map})'
  fig, ax = plt.subplots(2, 1, figsize=(9, 4.8), sharex=True)
  _imu_axes(ax[0], ax[1], t, acc[k0:k0 + n], gyr[k0:k0 + n],
            f'real Xsens MTx on the shank, walking ({Path(path).name}, {rate:g} Hz)\n{frame}')
  ax[1].set_xlabel('time (s)')
  fig.tight_layout()
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=90)
  plt.close(fig)
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  sub = p.add_subparsers(dest='what', required=True)
  s = sub.add_parser('synthetic', help='simulate one subject walking and plot it')
  s.add_argument('--out', default='runs/plots/synthetic_example.png')
  s.add_argument('--seconds', type=float, default=4.0)
  s.add_argument('--speed', type=float, default=1.3)
  s.add_argument('--subject', type=int, default=0)
  s.add_argument('--seed', type=int, default=0)
  s.add_argument('--rate', type=float, default=100.0)
  x = sub.add_parser('xsens', help='plot an Xsens MT Manager text export')
  x.add_argument('path')
  x.add_argument('--out', default='runs/plots/real_xsens_shank.png')
  x.add_argument('--seconds', type=float, default=4.0)
  x.add_argument('--start', type=float, default=10.0)
  x.add_argument('--axes', default=XSENS_SHANK_AXES,
                 help="sensor -> body axis map, e.g. 'forward=+y,up=-x,right=+z'; 'sensor' = raw")
  a = p.parse_args(argv)
  if a.what == 'synthetic':
    print(plot_synthetic(a.out, a.seconds, a.speed, a.subject, a.seed, a.rate))
  else:
    print(plot_xsens(a.path, a.out, a.seconds, a.start, a.axes))


if __name__ == '__main__':
  main()
