"""Preloaded by the DSE forkserver only (`picojoule.dse.backends.LocalBackend`): the
forkserver dies with the run.

Importing this module has a side effect on purpose - it is how code runs in the forkserver,
which imports its preload list and nothing else. It lives outside `picojoule.dse`, whose
package imports torch and the mapper (seconds): the guard must act at once, before a Ctrl-C
or a SIGKILL of the run can arrive. No other module imports it.
"""

import os
import signal

from picojoule.procs import die_with_parent

_parent = os.getppid()
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle, not ours
die_with_parent()
if os.getppid() != _parent or _parent == 1:  # the run died before the guard was armed
    os._exit(0)
