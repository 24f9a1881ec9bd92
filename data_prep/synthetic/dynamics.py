"""Ground reaction forces of foot contacts, and the centre-of-mass motion they imply.

The vertical GRF is built contact by contact: an *active* part (a smooth stance-long shape:
the double hump of walking, the single hump of running / hopping) plus an *impact* part, the
force that stops the foot's effective mass (foot + shank + part of the thigh) within the heel-pad
time constant tau after touchdown (impulse = m_eff * v_touchdown; the foot trajectory in
``gait`` decelerates with exactly this time course). Each contact carries the body-weight
impulse of the time until the next contact starts, so the stride-averaged vertical force is body
weight and the CoM does not drift. The CoM then follows Newton's law exactly (in discrete form,
its central second difference equals F/m - g), which makes it ballistic in flight.
"""

from __future__ import annotations

import dataclasses

import numpy as np

G = 9.81


def smooth3(x: np.ndarray) -> np.ndarray:
  """Cubic smoothstep on [0, 1] (clipped)."""
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3 - 2 * x)


def smooth5(x: np.ndarray) -> np.ndarray:
  """Quintic smoothstep on [0, 1] (zero first and second derivative at both ends)."""
  x = np.clip(x, 0.0, 1.0)
  return x ** 3 * (10 - 15 * x + 6 * x * x)


@dataclasses.dataclass
class Contact:
  """One foot contact. Times in s; forces as fractions of body weight where noted."""

  side: str
  t0: float
  t1: float
  impulse: float            # total vertical impulse, N s
  kind: str                 # 'walk' | 'run' | 'hop'
  shape: tuple              # walk: (P1, V, P2, s1, s2) knots; run/hop: (a, b) exponents
  m_eff: float              # kg, effective mass stopped at touchdown
  v_td: float               # m/s, downward foot velocity at touchdown
  tau: float                # s, duration of the impact deceleration
  ap_bw: float              # peak braking / propulsive force, BW
  ml_bw: float              # medial force amplitude, BW (sign by side)
  yaw: float = 0.0          # heading of the foot's AP axis
  load_share: float = 1.0   # for two-footed contacts (hops), each foot's share


def active_shape(kind: str, shape: tuple, s: np.ndarray) -> np.ndarray:
  """Non-negative stance shape on normalised stance time s in [0, 1]."""
  s = np.clip(s, 0.0, 1.0)
  if kind == 'walk':
    # Double hump: a smoothstep loading ramp over [0, s1] (s1 = end of the initial double
    # support), P1 -> V -> P2 with zero slope at the knots, a smoothstep unloading ramp over
    # [s2, 1] (s2 = the other foot's heel strike). The leading foot's ramp (P1 * h) and the
    # trailing foot's (P2 * (1 - h)) then span the same double support with the same h, so the
    # two feet's forces sum to a smooth P2 -> P1 transition (~1.1 BW) as in measured walking,
    # not to the ~1.5 BW bulge that two independently shaped ramps give.
    p1, v, p2, s1, s2 = shape
    from scipy import interpolate  # noqa: PLC0415 (scipy: ~1.5 s to import; loaded where used)
    mid = interpolate.CubicHermiteSpline([s1, 0.5 * (s1 + s2), s2], [p1, v, p2], [0.0, 0.0, 0.0])
    g = np.where(s < s1, p1 * smooth3(s / s1),
                 np.where(s > s2, p2 * (1.0 - smooth3((s - s2) / (1.0 - s2))),
                          mid(np.clip(s, s1, s2))))
  elif kind in ('run', 'hop'):
    a, b = shape
    g = s ** a * (1 - s) ** b
  else:
    raise ValueError(f'unknown contact kind {kind!r}')
  return np.maximum(g, 0.0)


def _profile(t: np.ndarray, c: Contact):
  """Sample indices of a contact (may run past the grid), its impact force and unit active shape."""
  dt = float(t[1] - t[0])
  i0 = int(np.ceil((c.t0 - t[0]) / dt - 1e-9))
  i1 = int(np.ceil((c.t1 - t[0]) / dt - 1e-9))
  idx = np.arange(i0, max(i1, i0 + 3))
  tt = t[0] + idx * dt
  s = (tt - c.t0) / (c.t1 - c.t0)
  x = (tt - c.t0) / c.tau
  imp = np.where(x < 1.0, 6 * x * (1 - x), 0.0)
  if imp.sum() > 0:  # discrete impulse exactly m_eff * v_td (times this foot's load share)
    imp *= c.m_eff * c.v_td / (imp.sum() * dt)
  g = active_shape(c.kind, c.shape, s)
  g = g / (g.sum() * dt)
  return idx, s, imp, g


def balance_impulses(t: np.ndarray, contacts: list[Contact], weight_n: float,
                     mass_kg: float, k_pos: float = 1.0) -> None:
  """Sets each contact's impulse so that the CoM height and vertical velocity stay regulated.

  Contacts are grouped by start time (two-footed hops start together). Over the interval from a
  group's start to the next group's start, the earlier contacts' tails plus the group's own
  impulse inside the interval must equal BW * interval (the vertical velocity then returns to the
  same value at every contact), corrected by a step-wise feedback on the errors of CoM height and
  velocity at the group's start (deadbeat on velocity, gain ``k_pos`` on height). Independent
  per-step impulses would let the CoM height random-walk by centimetres over a trial; people
  regulate it, and the stance geometry (knee angles) depends on it.
  """
  dt = float(t[1] - t[0])
  order = sorted(range(len(contacts)), key=lambda i: contacts[i].t0)
  groups: list[list[int]] = []
  for i in order:
    if groups and abs(contacts[i].t0 - contacts[groups[-1][0]].t0) < 0.5 * dt:
      groups[-1].append(i)
    else:
      groups.append([i])
  prof = {i: _profile(t, contacts[i]) for i in order}
  starts = _balance_pass(t, contacts, groups, prof, weight_n, mass_kg, None, k_pos)
  if len(starts) < 3:
    return
  # Velocity of the integration frame: zero mean vertical velocity between the first starts.
  total = _total_vertical(t, contacts, prof)
  a = total / mass_kg - G
  v = np.concatenate([[0.0], np.cumsum(a[1:]) * dt])
  z = np.cumsum(v) * dt
  i0, i1 = starts[0], starts[min(len(starts) - 1, 4)]
  v_init = -(z[i1] - z[i0]) / ((i1 - i0) * dt)
  _balance_pass(t, contacts, groups, prof, weight_n, mass_kg, v_init, k_pos)


def _total_vertical(t, contacts, prof) -> np.ndarray:
  dt, n = float(t[1] - t[0]), len(t)
  total = np.zeros(n)
  for i, c in enumerate(contacts):
    idx, _, imp, g = prof[i]
    keep = (idx >= 0) & (idx < n)
    total[idx[keep]] += (imp + (c.impulse - imp.sum() * dt) * g)[keep]
  return total


def _balance_pass(t, contacts, groups, prof, weight_n, mass_kg, v_init, k_pos) -> list[int]:
  """One sequential pass of ``balance_impulses``; feedback only when ``v_init`` is given."""
  dt, n = float(t[1] - t[0]), len(t)
  total = np.zeros(n)     # vertical force of the contacts fixed so far, on the grid
  done: list[int] = []
  ref = None
  starts = []
  for gi, grp in enumerate(groups):
    c0 = contacts[grp[0]]
    t_next = contacts[groups[gi + 1][0]].t0 if gi + 1 < len(groups) else c0.t1
    lo = int(np.ceil((c0.t0 - t[0]) / dt - 1e-9))
    hi = int(np.ceil((t_next - t[0]) / dt - 1e-9))
    tail = 0.0
    for j in done:
      idx, _, imp, g = prof[j]
      f = imp + (contacts[j].impulse - imp.sum() * dt) * g
      sel = (idx >= lo) & (idx < hi)
      tail += f[sel].sum() * dt
    fixed, per_j = 0.0, 0.0   # group impulse inside the interval = fixed + J_group * per_j
    for i in grp:
      idx, _, imp, g = prof[i]
      sel = (idx >= lo) & (idx < hi)
      fixed += imp[sel].sum() * dt - imp.sum() * dt * g[sel].sum() * dt
      per_j += contacts[i].load_share * g[sel].sum() * dt
    target = weight_n * (hi - lo) * dt - tail - fixed
    if 2 < lo < n:
      starts.append(lo)
      if v_init is not None:
        a = total[:lo] / mass_kg - G
        v_half = v_init + np.cumsum(a[1:]) * dt
        z = float(np.sum(v_half[:-1]) * dt)
        v = float(v_half[-1])
        if ref is None:
          ref = (z, v)
        else:
          dur = max((hi - lo) * dt, dt)
          target -= mass_kg * ((v - ref[1]) + k_pos * (z - ref[0]) / dur)
    j_group = target / max(per_j, 1e-9)
    for i in grp:
      c = contacts[i]
      c.impulse = c.load_share * j_group
      idx, _, imp, g = prof[i]
      keep = (idx >= 0) & (idx < n)
      total[idx[keep]] += (imp + (c.impulse - imp.sum() * dt) * g)[keep]
    done.extend(grp)
    done = [j for j in done if contacts[j].t1 > t_next - dt]
  return starts


def contact_forces(t: np.ndarray, contacts: list[Contact], weight_n: float
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
  """Per-foot GRF [T,3] (N, on the body), stance normalised time [T] (-1 outside) and contact masks.

  The discrete impulse of each contact (sum F dt over its samples) equals ``impulse`` exactly.
  """
  dt = float(t[1] - t[0])
  n = len(t)
  grf = {s: np.zeros((n, 3)) for s in ('r', 'l')}
  phase = {s: np.full(n, -1.0) for s in ('r', 'l')}
  mask = {s: np.zeros(n, bool) for s in ('r', 'l')}
  for c in contacts:
    idx, s, imp, g = _profile(t, c)
    if idx[-1] < 0 or idx[0] >= n:
      continue
    j_act = c.impulse - imp.sum() * dt
    if j_act <= 0:
      raise ValueError(f'contact at t={c.t0:.3f}s: impact impulse exceeds the contact impulse')
    fz = imp + j_act * g
    ap = -c.ap_bw * weight_n * c.load_share * np.sin(2 * np.pi * s)
    ml = (-1.0 if c.side == 'r' else 1.0) * c.ml_bw * weight_n * c.load_share * np.sin(np.pi * s)
    cy, sy = np.cos(c.yaw), np.sin(c.yaw)
    keep = (idx >= 0) & (idx < n)
    idx, fz, ap, ml, s = idx[keep], fz[keep], ap[keep], ml[keep], s[keep]
    grf[c.side][idx, 0] += ml * cy - ap * sy
    grf[c.side][idx, 1] += ml * sy + ap * cy
    grf[c.side][idx, 2] += fz
    phase[c.side][idx] = s
    mask[c.side][idx] = True
  return grf, phase, mask


def com_from_force(force: np.ndarray, mass_kg: float, dt: float,
                   mean_velocity: np.ndarray) -> np.ndarray:
  """CoM trajectory [T,3] whose central second difference is force / m - g exactly.

  The integration constants are fixed by ``mean_velocity`` (m/s, per axis) and by removing the
  linear drift left by a trial that does not span whole strides (a line has zero acceleration).
  """
  a = force / mass_kg - np.array([0.0, 0.0, G])
  n = len(a)
  v_half = np.concatenate([np.zeros((1, 3)), np.cumsum(a[1:-1], axis=0) * dt])  # [n-1, 3]
  p = np.concatenate([np.zeros((1, 3)), np.cumsum(v_half, axis=0) * dt])
  tt = np.arange(n) * dt
  for ax in range(3):
    coef = np.polyfit(tt, p[:, ax], 1)
    p[:, ax] += -np.polyval(coef, tt) + mean_velocity[ax] * tt
  return p
