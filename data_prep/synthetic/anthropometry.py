"""Body segment parameters scaled from height, mass and sex, and per-subject trait sampling.

Masses and centre-of-mass (CoM) positions: de Leva (1996), J Biomech 29(9):1223-1230 (the
Zatsiorsky-Seluyanov data adjusted to joint centres), male / female columns. Segment lengths as
fractions of stature: Drillis & Contini (1966) as tabulated in Winter (2009), Biomechanics and
Motor Control of Human Movement, 4th ed., Fig. 4.1. Each subject gets +-2.5 % (1 sd) individual
variation of every length, then the vertical chain is rescaled to the subject's height.

Segment frames at neutral standing coincide with the world frame: x right, y forward, z up. Limb
segments hang along -z from their proximal joint; the foot's long axis is +y.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# name: (mass % male, mass % female, CoM % from proximal male, female); de Leva (1996) Table 4.
# head = VERT-CERV measured from the vertex, torso = SUPR-MIDA measured from SUPR (its top): both
# are converted below to "from the proximal joint" in our chain (neck base, lumbar joint).
DE_LEVA = {
    'head': (6.94, 6.68, 50.02, 48.41),
    'torso': (32.29, 30.10, 41.66, 37.41),
    'pelvis': (11.17, 12.47, 50.0, 50.0),
    'upperarm': (2.71, 2.55, 57.72, 57.54),
    'forearm': (1.62, 1.38, 45.74, 45.59),
    'hand': (0.61, 0.56, 36.24, 34.27),   # WJC-DAC3 (wrist to finger tip) variant
    'thigh': (14.16, 14.78, 40.95, 36.12),
    'shank': (4.33, 4.81, 44.59, 44.16),  # KJC-LMAL
    'foot': (1.37, 1.29, 44.15, 40.14),   # heel to toe tip
}

# Lengths / stature (Drillis & Contini via Winter 2009); pelvis / torso / head split the
# 0.530 H (hip) .. 1.0 H (vertex) span at the navel (0.61 H) and the suprasternal notch (0.82 H).
LENGTH_FRAC = {
    'foot': 0.152, 'ankle_height': 0.039, 'shank': 0.246, 'thigh': 0.245, 'pelvis': 0.080,
    'torso': 0.210, 'head': 0.180, 'upperarm': 0.186, 'forearm': 0.146, 'hand': 0.108,
    'hip_half_width': 0.052, 'shoulder_half_width': 0.110, 'shoulder_drop': 0.030,
    'heel_to_ankle': 0.25,   # of foot length
    'heel_to_ball': 0.72,    # of foot length
}

SEGMENTS = ('pelvis', 'torso', 'head', 'r_upperarm', 'r_forearm', 'r_hand', 'l_upperarm',
            'l_forearm', 'l_hand', 'r_thigh', 'r_shank', 'r_foot', 'l_thigh', 'l_shank', 'l_foot')


@dataclasses.dataclass
class Body:
  """Segment geometry (m) and inertia (kg) of one subject."""

  height_m: float
  mass_kg: float
  sex: str
  length: dict[str, float]
  seg_mass: dict[str, float]       # keyed by SEGMENTS
  com_frac: dict[str, float]       # CoM distance from the proximal joint / segment length

  @property
  def weight_n(self) -> float:
    return self.mass_kg * 9.81

  @property
  def leg_length(self) -> float:
    return self.length['thigh'] + self.length['shank']


def make_body(height_m: float, mass_kg: float, sex: str,
              rng: np.random.Generator | None = None, length_sd: float = 0.025) -> Body:
  """Body of given stature, mass and sex ('m' or 'f'), with optional individual proportions."""
  if sex not in ('m', 'f'):
    raise ValueError(f"sex must be 'm' or 'f', got {sex!r}")
  if not 1.2 < height_m < 2.3:
    raise ValueError(f'height_m = {height_m}: expected metres in (1.2, 2.3)')
  if not 30 < mass_kg < 200:
    raise ValueError(f'mass_kg = {mass_kg}: expected kg in (30, 200)')
  frac = dict(LENGTH_FRAC)
  if rng is not None:
    for k in ('foot', 'shank', 'thigh', 'pelvis', 'torso', 'upperarm', 'forearm', 'hand',
              'hip_half_width', 'shoulder_half_width'):
      frac[k] *= float(np.clip(rng.normal(1.0, length_sd), 0.92, 1.08))
    chain = ('ankle_height', 'shank', 'thigh', 'pelvis', 'torso', 'head')
    total = sum(frac[k] for k in chain)
    for k in chain:
      frac[k] /= total
  length = {k: v * height_m for k, v in frac.items() if k not in ('heel_to_ankle', 'heel_to_ball')}
  length['heel_to_ankle'] = frac['heel_to_ankle'] * length['foot']
  length['heel_to_ball'] = frac['heel_to_ball'] * length['foot']
  col = 0 if sex == 'm' else 1
  seg_mass, com_frac = {}, {}
  for seg in SEGMENTS:
    base = seg[2:] if seg[:2] in ('r_', 'l_') else seg
    row = DE_LEVA[base]
    seg_mass[seg] = row[col] / 100.0 * mass_kg
    c = row[2 + col] / 100.0
    # head and torso are tabulated from their top; our chain's proximal joint is at the bottom.
    com_frac[seg] = 1.0 - c if base in ('head', 'torso') else c
  scale = mass_kg / sum(seg_mass.values())  # table sums to 100 +- 0.01 %
  seg_mass = {k: v * scale for k, v in seg_mass.items()}
  return Body(height_m=float(height_m), mass_kg=float(mass_kg), sex=sex, length=length,
              seg_mass=seg_mass, com_frac=com_frac)


@dataclasses.dataclass
class Subject:
  """A synthetic subject: body plus movement traits that persist across trials."""

  subject_id: int
  body: Body
  traits: dict[str, Any]

  def metadata(self) -> dict[str, Any]:
    t = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.traits.items()}
    return {'body_mass_kg': round(self.body.mass_kg, 2), 'height_m': round(self.body.height_m, 3),
            'sex': self.body.sex, 'traits': t}


def sample_subject(rng: np.random.Generator, subject_id: int) -> Subject:
  """Draws an adult: stature / BMI by sex (roughly adult population spreads), and gait traits.

  Traits are multipliers / offsets applied on top of the speed-dependent normative relations in
  ``gait`` and ``activities`` (step length, cadence, duty factor, joint amplitudes, posture,
  strike style ...).
  """
  sex = 'm' if rng.random() < 0.5 else 'f'
  height = float(np.clip(rng.normal(1.77 if sex == 'm' else 1.64, 0.07), 1.50, 2.00))
  bmi = float(np.clip(rng.normal(23.5, 2.8), 18.5, 32.0))
  mass = bmi * height ** 2
  body = make_body(height, mass, sex, rng)
  u = lambda sd: float(rng.normal(1.0, sd))
  strike = rng.choice(['rear', 'mid', 'fore'], p=[0.7, 0.2, 0.1])
  traits = {
      'sex': sex,
      'step_length_factor': u(0.05),
      'cadence_factor_run': u(0.05),
      'contact_time_factor_run': u(0.07),
      'step_width_m': float(np.clip(rng.normal(0.11, 0.025), 0.04, 0.2)),
      'toe_out_deg': float(rng.normal(7.0, 4.0)),
      'asymmetry': float(rng.normal(0.0, 0.02)),        # relative L/R step-time / force shift
      'grf_valley_k': float(rng.normal(0.0, 0.05)),      # offset of the walking mid-stance valley
      'grf_skew_j': float(rng.normal(0.06, 0.03)),       # first vs second walking peak
      'ap_force_factor': u(0.12),
      'ml_force_factor': u(0.25),
      'strike_habit': str(strike),
      'heel_pad_tau_s': float(np.clip(rng.normal(0.024, 0.004), 0.015, 0.035)),
      'impact_mass_frac': float(np.clip(rng.normal(0.14, 0.025), 0.09, 0.2)),
      'touchdown_v_factor': u(0.15),
      'min_knee_flex_deg_walk': float(np.clip(rng.normal(6.0, 3.0), 1.0, 14.0)),
      'min_knee_flex_deg_run': float(np.clip(rng.normal(16.0, 4.0), 8.0, 26.0)),
      'heel_strike_pitch_deg': float(np.clip(rng.normal(18.0, 4.0), 8.0, 28.0)),
      'toe_off_pitch_deg': float(np.clip(rng.normal(-55.0, 6.0), -70.0, -40.0)),
      'foot_ahead_factor_run': float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
      'cop_start_frac': float(np.clip(rng.normal(0.10, 0.03), 0.03, 0.2)),
      'cop_end_frac': float(np.clip(rng.normal(0.88, 0.03), 0.78, 0.96)),
      'pelvis_tilt_deg': float(rng.normal(10.0, 4.0)),
      'pelvis_rot_amp_deg': float(np.clip(rng.normal(5.0, 1.5), 1.5, 10.0)),
      'pelvis_obl_amp_deg': float(np.clip(rng.normal(4.0, 1.2), 1.0, 8.0)),
      'trunk_lean_deg': float(rng.normal(4.0, 3.0)),
      'arm_swing_factor': float(np.clip(rng.normal(1.0, 0.25), 0.4, 1.7)),
      'elbow_flex_deg': float(np.clip(rng.normal(25.0, 8.0), 5.0, 45.0)),
      'run_elbow_flex_deg': float(np.clip(rng.normal(85.0, 12.0), 55.0, 115.0)),
      'swing_clearance_m': float(np.clip(rng.normal(0.06, 0.015), 0.03, 0.1)),
      'movement_vigour': u(0.15),
      # Walking stance knee template (Winter 2009 / Perry 1992): flexion at heel strike, the
      # loading-response peak and the ankle's lead at heel strike (fraction of the CoM travel).
      'hs_knee_deg': float(np.clip(rng.normal(7.0, 2.0), 4.0, 12.0)),
      'lr_knee_deg': float(np.clip(rng.normal(15.0, 3.5), 7.0, 24.0)),
      'hs_ahead_step_frac': float(np.clip(rng.normal(0.40, 0.025), 0.33, 0.47)),
      'stance_roll_frac': float(np.clip(rng.normal(0.95, 0.05), 0.85, 1.05)),
      'swing_knee_peak_deg': float(np.clip(rng.normal(62.0, 4.0), 52.0, 72.0)),
      'toe_off_knee_deg': float(np.clip(rng.normal(38.0, 4.0), 28.0, 48.0)),
      'com_excursion_factor': float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
  }
  return Subject(subject_id=int(subject_id), body=body, traits=traits)
