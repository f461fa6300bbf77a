"""``python -m bastion``: the same as the ``bastion`` console script; also the entry point of
the standalone executable (``make dist``)."""

import sys

#: A frozen executable has no interpreter to run ``_shim.py`` with, so it runs the parent-death
#: shim itself when started as ``bastion <SHIM_FLAG> FD GRACE PROC CGROUP -- PROGRAM ...``
#: (``bastion.supervisor.process`` starts it so).
SHIM_FLAG = "--bastion-parent-death-shim"

if __name__ == "__main__":
    # The shim is POSIX only (Windows children die with their Job Object instead).
    if sys.platform != "win32" and len(sys.argv) > 1 and sys.argv[1] == SHIM_FLAG:
        from bastion.supervisor._shim import main as shim_main

        shim_main(sys.argv[2:])
    else:
        from bastion.cli import main

        main()
