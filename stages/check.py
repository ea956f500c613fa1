"""Stage ``check``: the whole params file and the inputs it names, before any other stage runs.

    python -m stages.check --dvc-yaml dvc.yaml --out data/params.checked [--params params.yaml]

Every stage depends on ``--out``, and this stage on the whole params file: a change anywhere
in it (a misspelt key beside the real one, an unknown section, a bad value, a data root that
is not there) stops ``dvc repro`` here, before DVC deletes the outputs of a stage that would
fail. ``--out`` says the same for every good file, so a good change reruns only the stages
whose own params or inputs changed. Calls :func:`dainet.params.load_params` and
:func:`dainet.params.missing_inputs`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dainet import cli
from dainet.errors import UserError
from dainet.params import load_params, missing_inputs, pipeline_outputs
from dainet.utils.fileio import write_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dvc-yaml", type=Path, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)   # every key known, every value of its type and range
    missing = missing_inputs(params, pipeline_outputs(args.dvc_yaml))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{args.params}: {missing[0]}{more}")
    write_text(args.out, "params and inputs checked\n")
    return 0


if __name__ == "__main__":
    cli.run(main)
