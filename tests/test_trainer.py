"""The shared training loop's progress lines: at least every ``train.progress_every_s`` of wall
time whatever the logging cadence (lines only: metrics.jsonl keeps the logged steps), with an ETA
from the second line on."""

import json
import re

import jax
import jax.numpy as jnp

from ssl_imu_jax.training import checkpointing, trainer
from ssl_imu_jax.training.metric_writers import MetricWriter


def _loop(tmp_path, progress_every_s: float, steps: int = 6):
  @jax.jit
  def step_fn(state, batch, rng):
    del batch, rng
    return {'w': state['w'] + 1.0}, {'loss': state['w']}

  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'))
  writer = MetricWriter(str(tmp_path), steps, progress=True, tag='toy',
                        progress_every_s=progress_every_s)
  try:
    trainer.train_loop(state={'w': jnp.zeros(())}, step_fn=step_fn, rng=jax.random.key(0),
                       total_steps=steps, batches=lambda start: ((s, None)
                                                                 for s in range(start, steps)),
                       ckpt=ckpt, meta={}, writer=writer, log_every=100, checkpoint_every=100)
  finally:
    writer.close()
    ckpt.close()
  with open(tmp_path / 'metrics.jsonl') as f:
    return [json.loads(line)['step'] for line in f]


def test_progress_lines_come_by_wall_time_whatever_log_every_is(tmp_path, capsys):
  logged = _loop(tmp_path / 'a', progress_every_s=1e-6)  # a line is due after every step
  lines = [ln for ln in capsys.readouterr().err.splitlines() if ' train step ' in ln]
  assert [int(re.search(r'step (\d+)/6', ln).group(1)) for ln in lines] == [1, 2, 3, 4, 5, 6]
  assert 'timing from here on' in lines[0]
  assert all(re.search(r'steps/s ETA \d+s$', ln) for ln in lines[1:])
  assert logged == [6]  # the progress lines write nothing: only the logged step is a row

  logged = _loop(tmp_path / 'b', progress_every_s=3600.0)  # never due: the logged step only
  lines = [ln for ln in capsys.readouterr().err.splitlines() if ' train step ' in ln]
  assert len(lines) == 1 and 'step 6/6' in lines[0] and logged == [6]
