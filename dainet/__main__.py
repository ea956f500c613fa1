"""``python -m dainet doctor``: what the runtime detected (Jittor, CUDA, oneDNN, cache).
``python -m dainet compare``: seeds x configurations of the finished experiments
(:mod:`dainet.evaluation.compare`)."""
import sys

from dainet import runtime


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "compare":
        from dainet.cli import run
        from dainet.evaluation import compare
        run(compare.main, argv[1:])
    if not argv or argv[0] != "doctor":
        print("usage: python -m dainet doctor [--install] [--no-jittor] | compare [--help]", file=sys.stderr)
        return 2
    return runtime.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
