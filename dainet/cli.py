"""Shared stage-script plumbing: turn :class:`UserError` into one line and exit 2."""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

from dainet import params
from dainet.errors import UserError

# set by Open MPI's mpirun in every rank it starts (and by other MPIs' PMI)
RANK_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


def inside_mpi(env=os.environ) -> bool:
    """Whether this process is a rank started by mpirun."""
    return any(v in env for v in RANK_VARS)


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Call ``main(argv)``; a UserError prints ``error: <message>`` and exits 2.

    A stage that finished while its params file changed under it fails too (status 2, naming
    the keys: :func:`dainet.params.changed_under_us`): DVC would record values it did not use.

    Under mpirun a failing rank leaves at once (``os._exit``, no MPI_Finalize): Open MPI then
    ends the whole job with its status. A plain exit would wait in MPI_Finalize for the other
    ranks while they wait for this one in their next collective, for ever.
    """
    leave = leave_now if inside_mpi() else sys.exit
    params.forget_loaded()
    try:
        rc = main(argv)
        changed = None if rc else params.changed_under_us()
        if changed:
            raise params.ParamError(changed)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        leave(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        leave_now(130)   # exit handlers may wait for ever on workers the same Ctrl-C ended
    except Exception:
        if leave is sys.exit:
            raise
        traceback.print_exc()
        leave(1)
    if rc and leave is not sys.exit:
        leave(rc)
    sys.exit(rc or 0)


def leave_now(code: int) -> None:
    """Exit at once with ``code``, output flushed, no exit handlers: for a process whose exit
    handlers could wait for ever (MPI_Finalize; a Jittor compile pool whose workers the same
    Ctrl-C killed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
