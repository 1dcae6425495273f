"""Preloaded by the DSE forkserver only (`LocalBackend`): the forkserver dies with the run.

Importing this module has a side effect on purpose - it is how code runs in the forkserver,
which imports its preload list and nothing else. No other module imports it.
"""

from picojoule.dse.procs import die_with_parent

die_with_parent()
