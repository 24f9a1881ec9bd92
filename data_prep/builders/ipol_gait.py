"""IPOL healthy-gait set (Voisard et al., IPOL 2023): three Xsens MTw IMUs at 100 Hz.

Two modes (option ``mode``):

* ``windows`` (default): unlabelled windows of every trial for pre-training, static windows
  dropped, splits 'train' / 'validation' with disjoint subjects.
* ``strides``: one example per stride of one foot (option ``foot``: right | left), labelled from
  the hand-checked footstep events: stride, stance and swing durations (s) and the trial's walking
  speed (m/s); a single 'train' split holding all subjects. The window is centred on the stride
  (``anchor=center``) or starts ``pre_s`` before the foot contact (``anchor=contact``). Strides
  longer than the window are kept (cut) unless ``require_full_stride=true``. Measured on the
  right-foot strides of subjects 1-10 (800 after the gates below): 91 % are shorter than a
  128-sample window at 100 Hz, 99.5 % shorter than 160 samples.

Manual dir layout (as published, flat; sub-folders are searched too)::

  <manual_dir>/<s>-<t>.json      metadata and events of subject s, trial t
  <manual_dir>/<s>-<t>_lb.txt    lower back (L5)   Xsens text export, "Acquisition frequency" header
  <manual_dir>/<s>-<t>_lf.txt    left foot
  <manual_dir>/<s>-<t>_rf.txt    right foot

Event indices in the JSON are ``PacketCounter`` values, not row numbers: the files drop packets
(median 3 % of a file's counter range in subjects 1-10, up to 20 %) and in 13 trials a foot's
events lie beyond its file's last row. Rows are therefore put
on the counter grid (short gaps linearly interpolated, longer ones excluded), which also aligns
the three sensors. Each ``[start, end]`` event spans the swing of that foot (foot off -> foot
contact), so for consecutive events k, k+1 of one foot: stride = end[k+1] - end[k], stance =
start[k+1] - end[k], swing = end[k+1] - start[k+1]. Walking speed = ``distance_m`` (20: 10 m out
and back) / (trial duration - U-turn duration), from ``TrialBoundaries`` and ``UTurnBoundaries``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np

from data_prep import axes, preprocess, records
from data_prep.readers import xsens

log = logging.getLogger(__name__)

SITES = ('LowerBack', 'LeftFoot', 'RightFoot')
_FILES = {'LowerBack': 'lb', 'LeftFoot': 'lf', 'RightFoot': 'rf'}
STRIDE_TARGETS = {'stride_time': 's', 'stance_time': 's', 'swing_time': 's',
                  'walking_speed': 'm/s'}
_JSON_KEYS = ('Subject', 'Trial', 'TrialBoundaries', 'UTurnBoundaries', 'LeftFootEvents',
              'RightFootEvents')
LAYOUT = """  <manual_dir>/<s>-<t>.json            (Subject, Trial, Height, Weight, TrialBoundaries,
                                        UTurnBoundaries, LeftFootEvents, RightFootEvents)
  <manual_dir>/<s>-<t>_lb.txt / _lf.txt / _rf.txt   Xsens text exports (lower back, left foot,
                                        right foot), first line 'Acquisition frequency: 100 Hz'
  e.g. 1-1.json, 1-1_lb.txt, 1-1_lf.txt, 1-1_rf.txt (https://www.ipol.im/pub/art/2023/497/)"""


class IpolGait(records.ImuWindowBuilder):
  """IPOL healthy gait: lower back + both feet, windows for pre-training or labelled strides."""

  SITES = SITES
  WITH_GYR = True
  SOURCE_RATE_HZ = 100.0
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put the IPOL gait files in manual_dir:\n{LAYOUT}'
  SOURCE_PATTERNS = ('**/*.json', '**/*.txt')
  DESCRIPTION = __doc__

  # -- options ---------------------------------------------------------------------------------
  @property
  def mode(self) -> str:
    m = str(self.builder_config.option('mode', 'windows'))
    if m not in ('windows', 'strides'):
      raise ValueError(f"ipol_gait: option mode={m!r}; expected 'windows' or 'strides'")
    return m

  @property
  def TARGETS(self) -> dict[str, str]:  # noqa: N802 (the base class reads this name)
    return dict(STRIDE_TARGETS) if self.mode == 'strides' else {}

  def extra_metadata(self) -> dict[str, Any]:
    mode = str(self._opt('axes', 'body'))
    maps = axes.mapping_for('ipol_gait', SITES, mode, 'ipol_gait')
    return {'dataset': 'ipol_gait', 'mode': self.mode, 'axes': axes.mapping_json(maps, mode),
            'foot': str(self._opt('foot', 'right')) if self.mode == 'strides' else None,
            'source_rate_hz': self.SOURCE_RATE_HZ, 'options': dict(self.builder_config.options)}

  # -- splits ----------------------------------------------------------------------------------
  def _split_generators(self, dl_manager):
    root = preprocess.manual_dir(dl_manager, LAYOUT)
    trials = find_trials(root)
    wanted = preprocess.parse_id_list(self._opt('subjects', None))
    if wanted:
      empty = [s for s in wanted if s not in {t['subject'] for t in trials}]
      if empty:
        raise ValueError(f'{root}: subject(s) {empty} have no trials (no <s>-<t>.json files)')
      trials = [t for t in trials if t['subject'] in wanted]
    subjects = sorted({t['subject'] for t in trials})
    self.info.metadata['subjects'] = {str(t['subject']): t['info'] for t in trials}
    if self.mode == 'strides':
      return {'train': self._generate_examples(trials)}
    split = preprocess.split_subjects(subjects, self._opt('validation_subjects', None),
                                      float(self._opt('validation_fraction', 0.1)))
    self.info.metadata['splits_subjects'] = split
    return {name: self._generate_examples([t for t in trials if t['subject'] in set(ids)], name)
            for name, ids in split.items() if ids}

  def _generate_examples(self, trials, split='train'):
    """A generator of (key, example), or a Beam PTransform with option beam=1."""
    return self.fan_out(trials, self._trial_examples, f'ipol_gait {split!r}')

  # -- per trial -------------------------------------------------------------------------------
  def _trial_examples(self, trial: dict[str, Any]):
    cfg = self.builder_config
    stem = trial['stem']
    meta = trial['meta']
    acc, gyr, ok, first = load_trial(trial['paths'], stem, self.SOURCE_RATE_HZ,
                                     int(self._opt('max_gap', 10)))
    mode = str(self._opt('axes', 'body'))
    maps = axes.mapping_for('ipol_gait', SITES, mode, stem)
    acc = np.stack([maps[s].apply(acc[i]) for i, s in enumerate(SITES)])
    gyr = np.stack([maps[s].apply(gyr[i]) for i, s in enumerate(SITES)])
    for i, s in enumerate(SITES):
      preprocess.check_imu_units(acc[i], gyr[i], self.SOURCE_RATE_HZ, f'{stem} {s}')
    if mode == 'body' and preprocess.as_bool(self._opt('check_axes', True)):
      s0, s1, _ = preprocess.still_segment(acc[0], self.SOURCE_RATE_HZ, 1.0)
      for i, s in enumerate(SITES):
        axes.check_up_axis(acc[i, s0:s1], s, stem)
    fs = float(cfg.sample_rate_hz)
    method = str(self._opt('resample', 'auto'))
    if fs != self.SOURCE_RATE_HZ:
      acc = preprocess.resample(acc, self.SOURCE_RATE_HZ, fs, method, axis=1)
      gyr = preprocess.resample(gyr, self.SOURCE_RATE_HZ, fs, method, axis=1)
      ok = preprocess.resample(ok.astype(np.float64), self.SOURCE_RATE_HZ, fs, 'linear') > 0.999
    t_len = cfg.window_length
    subject, trial_id = trial['subject'], trial['trial']
    if self.mode == 'windows':
      starts = preprocess.window_starts(acc.shape[1], t_len, cfg.window_stride)
      good = preprocess.take_windows(ok, starts, t_len).all(axis=1)
      a_w = np.moveaxis(preprocess.take_windows(np.moveaxis(acc, 1, 0), starts, t_len), 2, 1)
      thr = float(self._opt('static_threshold_g', 0.2))
      if thr > 0:
        good &= preprocess.dynamic_mask(a_w, thr)
      for st in starts[good]:
        yield f'{stem}/{int(st)}', self.example(
            acc[:, st:st + t_len], gyr[:, st:st + t_len], subject, trial_id,
            where=f'{stem} window at {st}', start=st)
      return
    labels = stride_labels(meta, str(self._opt('foot', 'right')), self.SOURCE_RATE_HZ,
                           float(self._opt('distance_m', 20.0)), where=stem,
                           tolerance=float(self._opt('stride_tolerance', 0.3)))
    anchor = str(self._opt('anchor', 'center'))
    if anchor not in ('center', 'contact'):
      raise ValueError(f"ipol_gait: option anchor={anchor!r}; expected 'center' or 'contact'")
    full = preprocess.as_bool(self._opt('require_full_stride', False))
    pre = int(round(float(self._opt('pre_s', 0.1)) * fs))
    n_skip = n_cut = 0
    for row in labels:
      c0 = int(preprocess.rescale_index(row['contact'] - first, self.SOURCE_RATE_HZ, fs))
      c1 = int(preprocess.rescale_index(row['next_contact'] - first, self.SOURCE_RATE_HZ, fs))
      st = c0 - pre if anchor == 'contact' else (c0 + c1) // 2 - t_len // 2
      cut = st > c0 or c1 >= st + t_len
      if (cut and full) or st < 0 or st + t_len > acc.shape[1] or not ok[st:st + t_len].all():
        n_skip += 1
        continue
      n_cut += int(cut)
      targets = {k: row[k] for k in STRIDE_TARGETS}
      yield f'{stem}/{row["contact"]}', self.example(
          acc[:, st:st + t_len], gyr[:, st:st + t_len], subject, trial_id, targets,
          where=f'{stem} stride at {row["contact"]}', start=st)
    if n_skip or n_cut:
      log.info('%s: of %d strides, %d skipped (outside the data, a gap, or not whole in the '
               'window with require_full_stride) and %d kept longer than the window', stem,
               len(labels), n_skip, n_cut)

# ----------------------------------------------------------------------------------------------
# Helpers, usable without TFDS

_STEM = re.compile(r'^(\d+)-(\d+)$')


def find_trials(root) -> list[dict[str, Any]]:
  """Every trial under ``root``: stem, subject, trial, file paths, JSON metadata (checked)."""
  trials = []
  for j in sorted(root.rglob('*.json'), key=lambda p: str(p)):
    m = _STEM.match(j.stem)
    if not m:
      continue
    files = {s: j.parent / f'{j.stem}_{f}.txt' for s, f in _FILES.items()}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
      raise FileNotFoundError(f'{j}: missing sensor file(s) {missing}. Expected layout:\n{LAYOUT}')
    meta = json.loads(j.read_text())
    absent = [k for k in _JSON_KEYS if k not in meta]
    if absent:
      raise KeyError(f'{j}: missing key(s) {absent}; expected {list(_JSON_KEYS)}')
    subject, trial = int(m.group(1)), int(m.group(2))
    if int(meta['Subject']) != subject or int(meta['Trial']) != trial:
      raise ValueError(f'{j}: Subject/Trial {meta["Subject"]}/{meta["Trial"]} contradict the '
                       f'file name')
    info = {'age': meta.get('Age'), 'gender': meta.get('Gender'),
            'height_m': float(meta['Height']) / 100.0 if meta.get('Height') else None,
            'mass_kg': float(meta['Weight']) if meta.get('Weight') else None}
    trials.append({'stem': j.stem, 'subject': subject, 'trial': trial,
                   'paths': {s: str(p) for s, p in files.items()},
                   'meta': {k: meta[k] for k in _JSON_KEYS}, 'info': info})
  if not trials:
    raise FileNotFoundError(f'{root}: no <s>-<t>.json trial files found. Expected layout:\n'
                            f'{LAYOUT}')
  trials.sort(key=lambda t: (t['subject'], t['trial']))
  return trials


def load_trial(paths: dict[str, str], stem: str, rate_hz: float = 100.0, max_gap: int = 10):
  """The three sensors on a common packet-counter grid.

  Returns acc, gyr [3, T, 3] (sensor frames, SI), ok [T] (False inside long gaps) and the counter
  value of sample 0.
  """
  grids = {}
  for s in SITES:
    e = xsens.read_xsens_txt(paths[s], sample_rate_hz=rate_hz)
    if e.counter is None:
      raise KeyError(f'{paths[s]}: no PacketCounter column; needed to align events')
    x = np.concatenate([e.acc(), e.gyr()], axis=1)
    grids[s] = preprocess.fill_counter_gaps(e.counter, x, max_gap=max_gap, period=0,
                                            where=str(paths[s]), lines=e.lines)
  first = max(int(g[0][0]) for g in grids.values())
  last = min(int(g[0][-1]) for g in grids.values())
  if last - first < 10:
    raise preprocess.TrialError(f'{stem}: the three sensors share no common packet-counter '
                                f'range')
  vals, oks = [], []
  for s in SITES:
    grid, y, ok = grids[s]
    sl = slice(first - int(grid[0]), last - int(grid[0]) + 1)
    vals.append(y[sl])
    oks.append(ok[sl])
  v = np.stack(vals)
  return v[..., :3], v[..., 3:], np.all(oks, axis=0), first


def stride_labels(meta: dict[str, Any], foot: str, rate_hz: float, distance_m: float = 20.0,
                  where: str = '', tolerance: float = 0.3,
                  stance_fraction: tuple[float, float] = (0.5, 0.8)) -> list[dict[str, float]]:
  """Per-stride durations (s) of one foot and the trial's walking speed, from the JSON events.

  Only strides inside ``TrialBoundaries`` and clear of the U-turn are returned, and only those
  whose duration is within ``tolerance`` (relative) of the trial's median stride and whose stance
  is ``stance_fraction`` of the stride: this drops a missed event (one 2.7 s "stride" in subjects
  1-10) and the stopping stride at the end of a walk. ``tolerance=inf`` keeps everything.
  """
  key = {'right': 'RightFootEvents', 'left': 'LeftFootEvents'}.get(foot)
  if key is None:
    raise ValueError(f"{where}: option foot={foot!r}; expected 'right' or 'left'")
  ev = np.asarray(meta[key], dtype=np.int64).reshape(-1, 2)
  if ev.size and np.any(ev[:, 1] <= ev[:, 0]):
    raise ValueError(f'{where}: {key} has an event whose end is not after its start')
  ev = ev[np.argsort(ev[:, 0])]
  t0, t1 = (int(v) for v in meta['TrialBoundaries'])
  u0, u1 = (int(v) for v in meta['UTurnBoundaries'])
  walk_s = ((t1 - t0) - (u1 - u0)) / rate_hz
  if walk_s <= 0:
    raise ValueError(f'{where}: TrialBoundaries {t0, t1} and UTurnBoundaries {u0, u1} leave no '
                     f'walking time')
  speed = distance_m / walk_s
  contact, next_off, next_contact = ev[:-1, 1], ev[1:, 0], ev[1:, 1]
  inside = (contact >= t0) & (next_contact <= t1)
  clear = (next_contact <= u0) | (contact >= u1)
  valid = inside & clear & (next_off > contact)
  stride = (next_contact - contact).astype(np.float64)
  if valid.any() and np.isfinite(tolerance):
    med = np.median(stride[valid])
    frac = (next_off - contact) / np.maximum(stride, 1)
    valid &= (np.abs(stride / med - 1.0) <= tolerance) & (frac >= stance_fraction[0]) & (
        frac <= stance_fraction[1])
  out = []
  for c, o, n in zip(contact[valid], next_off[valid], next_contact[valid], strict=True):
    out.append({'contact': int(c), 'next_contact': int(n),
                'stride_time': (n - c) / rate_hz, 'stance_time': (o - c) / rate_hz,
                'swing_time': (n - o) / rate_hz, 'walking_speed': speed})
  return out
