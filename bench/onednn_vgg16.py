"""How much oneDNN speeds up a VGG16 training step on this CPU (Jittor).

Runs the same step (forward, cross-entropy, backward, SGD) in two fresh processes,
one with oneDNN (`use_mkl=1`, as `dainet.runtime` sets up) and one without
(`use_mkl=0`), and prints the median seconds per step of each and their ratio.
Both numbers come from the same run on the same machine: compare the ratio, not
the absolute times.

    python bench/onednn_vgg16.py [--size 224] [--batch 1] [--steps 3]
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt
import numpy as np
from jittor.models import vgg16
size, batch, steps = map(int, sys.argv[1:4])
jt.set_global_seed(0)
net = vgg16(num_classes=10)
opt = jt.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
x = jt.array(np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32))
y = jt.array(np.arange(batch) % 10)
times = []
for i in range(steps + 1):  # first step compiles
    t = time.perf_counter()
    loss = jt.nn.cross_entropy_loss(net(x), y)
    opt.step(loss)
    jt.sync_all(True)
    times.append(time.perf_counter() - t)
print(json.dumps({"mkl": jt.compile_extern.mkl_ops is not None,
                  "median_s": float(np.median(times[1:]))}))
"""


def run(use_mkl: str, args) -> dict:
    env = dict(os.environ, use_mkl=use_mkl)
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.size), str(args.batch), str(args.steps)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    with_dnnl = run("1", args)
    without = run("0", args)
    if not with_dnnl["mkl"]:
        print("oneDNN is not available here (python -m dainet doctor --install)")
    print(f"VGG16 step {args.size}x{args.size} batch {args.batch}: "
          f"oneDNN {with_dnnl['median_s']:.2f} s, without {without['median_s']:.2f} s, "
          f"speed-up x{without['median_s'] / with_dnnl['median_s']:.1f}")


if __name__ == "__main__":
    main()
