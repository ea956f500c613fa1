"""One DAI-Net training step on the CPU, timed as a whole and part by part.

The step is the real one of the `train` stage (:class:`dainet.training.step.StepLosses`):
DarkISP, the frozen decomposition network on both images in one no-grad pass, the
training forward with both images, all losses, backward, gradient clipping, SGD.
Median seconds per step after warm-up, for each (batch, oneDNN on/off) combination,
each in a fresh process; then a per-part breakdown (parts synchronised one by one,
so their sum is a little above the fused step).

    python bench/train_step.py [--size 320] [--width 1.0] [--batches 1 4] [--steps 3] [--no-off] [--malloc-default]
    python bench/train_step.py --against REV [--rounds 3] [--profile params/wider.yaml --width 0] [--batches 1]

``--width 0 --size 128 --batches 4`` is the sample profile's own step (params.yaml);
``--profile params/wider.yaml --width 0 --batches 1`` the paper network's.
``--malloc-default`` also times each step with glibc's allocator at its defaults
(dainet.runtime.keep_freed_memory otherwise keeps freed memory), as a ratio.
``--against REV`` times this checkout's step against git revision REV's (a temporary
worktree, same data and params file) in alternating fresh processes, round after round,
and prints the median ratio this/REV: a before/after figure from one run.

Against the published PyTorch code, in one run: bench/versus.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# glibc's own default top pad: a user setting, so the runtime leaves the allocator alone
MALLOC_DEFAULT = {"MALLOC_TOP_PAD_": str(128 * 1024)}

CHILD = r"""
import json, sys, time
import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt
import numpy as np
from pathlib import Path
import yaml
from dainet.params import load_params
from dainet.models import build_model
from dainet.models.decomp import build_decomposer
from dainet.models.init import init_weights
from dainet.training.config import TrainConfig
from dainet.training.step import StepLosses
from dainet.training.objective import LossWeights, dainet_terms, detection_terms, total_loss
from dainet.training.optim import clip_grad_norm, make_optimizer
from dainet.data.darkisp import DarkISPConfig
from dainet.boxes.priors import both_shots
from dainet.models.config import ModelConfig

width, size, batch, steps, parts = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
decomp, profile = int(sys.argv[7]), sys.argv[8]
tmp = Path(sys.argv[6])
tree = yaml.safe_load((Path(dainet.__file__).resolve().parents[1] / profile).read_text())
if width:   # 0: the profile's own network
    tree["model"].update(width=width, decomp_channels=decomp)
tree["augment"]["image_size"], tree["train"]["batch_size"] = size, batch
tmp.write_text(yaml.safe_dump(tree, sort_keys=False))
p = load_params(tmp)   # the sample profile at this size, checked as the stages check it
cfg = p.section("train").load(TrainConfig, image_size=p.section("augment").value("image_size", int),
                              losses=p.section("train").load(LossWeights))
net = init_weights(build_model(p.section("model")), 0, "kaiming")
dec = init_weights(build_decomposer(p.section("model")), 0)
for q in dec.parameters():
    q.stop_grad()
opt = make_optimizer(net, "sgd", 1e-4, 0.1, 0.9, 5e-4)
step = StepLosses(net, dec, cfg, p.section("darkisp").load(DarkISPConfig),
                  both_shots(p.section("priors"), p.section("model").load(ModelConfig)))
rng = np.random.default_rng(0)
light_np = rng.random((batch, 3, size, size), dtype=np.float32)
targets_np = np.array([[[0.1, 0.1, 0.3, 0.3, 1], [0.5, 0.5, 0.9, 0.8, 1]]] * batch, np.float32)

def whole(i):
    terms, _ = step(jt.array(light_np), jt.array(targets_np), np.random.default_rng(i))
    loss = total_loss(terms)
    opt.backward(loss); clip_grad_norm(opt, cfg.clip_grad_norm); opt.step()
    jt.sync_all(True)
    return {"step": None}

def sync(*vs):
    jt.sync(list(vs)); jt.sync_all(True)

def by_parts(i):
    t = {}
    t0 = time.perf_counter()
    light, targets = jt.array(light_np), jt.array(targets_np)
    dark = step.darken(light, np.random.default_rng(i)); sync(dark)
    t["darkisp"] = time.perf_counter() - t0; t0 = time.perf_counter()
    R_dark_gt, I_dark, R_light_gt, I_light = step.decompose(dark, light); sync(R_dark_gt, I_dark, R_light_gt, I_light)
    t["decomposition"] = time.perf_counter() - t0; t0 = time.perf_counter()
    out = net.forward_train(dark, light, I_dark, I_light); sync(*out.values())
    t["forward"] = time.perf_counter() - t0; t0 = time.perf_counter()
    det = detection_terms(out, targets, step.priors1, step.priors2, step.multibox); sync(*det.values())
    t["multibox"] = time.perf_counter() - t0; t0 = time.perf_counter()
    other = dainet_terms(out, dark, light, R_dark_gt, R_light_gt, I_dark, I_light, cfg.losses); sync(*other.values())
    t["other_losses"] = time.perf_counter() - t0; t0 = time.perf_counter()
    loss = total_loss({**det, **other})
    opt.backward(loss)
    sync(*[g for pg in opt.param_groups for g in pg["grads"]])
    t["backward"] = time.perf_counter() - t0; t0 = time.perf_counter()
    clip_grad_norm(opt, cfg.clip_grad_norm); opt.step(); jt.sync_all(True)
    t["clip_step"] = time.perf_counter() - t0
    return t

if len(sys.argv) > 9 and sys.argv[9] != "0":   # Jittor's per-op profile of one whole step
    top = int(sys.argv[9])
    whole(0); whole(1)
    with jt.profile_scope(warmup=0, rerun=0) as report:
        whole(2)
    head, rows = report[0], report[1:]
    name, total = head.index("Name"), head.index("TotalTime")
    by_op = {}
    for r in rows:
        tokens = r[name].split("\u00ab")   # Jittor's op key: name<<T:...<<OP:...<<opkeyN:...
        kinds = [t.split(":", 1)[1] for t in tokens if t.startswith("opkey")]
        maths = [t[3:] for t in tokens if t.startswith("OP:")]
        key = tokens[0] or "fused " + "+".join(kinds)
        key += f" ({','.join(dict.fromkeys(maths))})" if maths else ""
        by_op[key] = by_op.get(key, 0.0) + float(r[total])
    ops = sorted(by_op.items(), key=lambda kv: -kv[1])
    print(json.dumps({"profile": [[k, v / 1e9] for k, v in ops[:top]], "all_ops": sum(by_op.values()) / 1e9}))
    sys.exit(0)
fn = by_parts if parts else whole
times = []
for i in range(steps + 1):
    t0 = time.perf_counter()
    r = fn(i)
    r["total"] = time.perf_counter() - t0
    if i:
        times.append(r)
med = {k: float(np.median([t[k] for t in times])) for k in times[0] if times[0][k] is not None}
print(json.dumps({"mkl": jt.compile_extern.mkl_ops is not None, **med}))
"""


def child(width, size, batch, steps, parts, use_mkl, tmpdir, decomp=64, profile="params.yaml", env=None, top=0,
          cwd=None, stdout=False):
    """One child process: the port's step on ``profile`` (a params file of the repository) at
    this size and batch; ``width`` 0 keeps the profile's network. Median seconds as a dict
    (and the child's whole standard output, with ``stdout``).
    ``cwd``: the checkout whose ``dainet`` runs (default: the current directory)."""
    env = dict(os.environ if env is None else env, use_mkl="1" if use_mkl else "0")
    out = subprocess.run([sys.executable, "-c", CHILD, str(width), str(size), str(batch), str(steps),
                          "1" if parts else "0", os.path.join(tmpdir, f"p{batch}{use_mkl}{parts}.yaml"), str(decomp),
                          profile, str(top)],
                         env=env, capture_output=True, text=True, cwd=cwd)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return (result, out.stdout) if stdout else result


def against(rev: str, args, tmp: str) -> None:
    """This checkout's step against revision ``rev``'s, alternating, ``args.rounds`` rounds."""
    import statistics
    tree = os.path.join(tmp, "rev")
    found = subprocess.run(["git", "rev-parse", "--short", "--verify", f"{rev}^{{commit}}"], capture_output=True,
                           text=True)
    if found.returncode:
        raise SystemExit(f"--against {rev}: not a git revision of this repository")
    rev = found.stdout.strip()
    subprocess.run(["git", "worktree", "add", "--detach", tree, rev], check=True, capture_output=True)
    try:
        for batch in args.batches:
            ratios = []
            for r in range(args.rounds):
                new, old = (child(args.width, args.size, batch, args.steps, False, True, tmp, args.decomp_channels,
                                  profile=args.profile, cwd=cwd)["total"] for cwd in (None, tree))
                ratios.append(new / old)
                print(f"  batch {batch} round {r + 1}: this {new:.3f} s, {rev} {old:.3f} s: {new / old:.3f}", flush=True)
            print(f"batch {batch}: this/{rev} (median of rounds) {statistics.median(ratios):.3f}")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], capture_output=True)


def main() -> None:
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--decomp-channels", type=int, default=64, help="DecomNet width (published: 64)")
    ap.add_argument("--no-off", action="store_true", help="skip the (slow) runs without oneDNN")
    ap.add_argument("--malloc-default", action="store_true",
                    help="also time each step with glibc's allocator at its defaults")
    ap.add_argument("--profile", default="params.yaml", help="params file (params/wider.yaml: the paper network)")
    ap.add_argument("--against", metavar="REV", help="time this checkout against git revision REV instead")
    ap.add_argument("--rounds", type=int, default=3, help="with --against: alternating rounds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            print(f"DAI-Net training step, {args.profile}, {args.size}x{args.size}, width {args.width or 'of the profile'}, "
                  f"CPU, median of {args.steps} after warm-up, this checkout against a worktree of {args.against}")
            return against(args.against, args, tmp)
        print(f"DAI-Net training step, {args.size}x{args.size}, width {args.width}, CPU, "
              f"median of {args.steps} after warm-up")
        for batch in args.batches:
            for mkl in ([True] if args.no_off else [True, False]):
                r = child(args.width, args.size, batch, args.steps, False, mkl, tmp, args.decomp_channels, args.profile)
                line = f"  batch {batch}  oneDNN {'on ' if mkl else 'off'}: {r['total']:.2f} s/step"
                if args.malloc_default:
                    d = child(args.width, args.size, batch, args.steps, False, mkl, tmp, args.decomp_channels, args.profile,
                              env=dict(os.environ, **MALLOC_DEFAULT))
                    line += f"; glibc-default malloc {d['total']:.2f} s/step ({d['total'] / r['total']:.2f}x)"
                print(line + ("" if r["mkl"] == mkl else "  (oneDNN unavailable)"))
        r = child(args.width, args.size, args.batches[0], args.steps, True, True, tmp, args.decomp_channels, args.profile)
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k not in ("mkl", "total"))
        print(f"  breakdown, batch {args.batches[0]}, oneDNN on (s): {parts}; sum {r['total']:.2f}")


if __name__ == "__main__":
    main()
