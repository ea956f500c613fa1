"""``python -m dainet doctor``: what the runtime detected (Jittor, CUDA, oneDNN, cache)."""
import sys

from dainet import runtime


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "doctor":
        print("usage: python -m dainet doctor [--install] [--no-jittor]", file=sys.stderr)
        return 2
    return runtime.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
