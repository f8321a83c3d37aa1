"""A Runner hook for tests/test_mmseg_plugin.py: SIGKILLs the training process after a given
iteration (a crash mid-run, nothing flushed)."""

import os
import signal

from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """Kills the process right after training iteration ``iteration`` (1-based)."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
