"""SGD parameter groups (spec §9): the reflectance decoder at lr/10, the reference's frozen L2Norm weights."""
import numpy as np
import pytest

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt

from dainet.models import build_model, init_weights
from dainet.training.optim import clip_grad_norm, make_optimizer, parameter_groups, set_lr
from helpers import paper_model

L2NORM_NAMES = {f"L2Norm{k}{i}.weight" for k in ("of", "ef") for i in (1, 2, 3)}


@pytest.fixture(scope="module")
def net():
    return init_weights(build_model(paper_model(width=0.125)), 0, "kaiming")


def test_groups_follow_the_reference(net):
    groups = {k: {n for n, _ in v} for k, v in parameter_groups(net, train_l2norm=False).items()}
    assert groups["frozen"] == L2NORM_NAMES
    assert groups["ref"] == {"ref.0.weight", "ref.0.bias", "ref.3.weight", "ref.3.bias"}
    assert not groups["main"] & (groups["frozen"] | groups["ref"])
    assert len(groups["main"]) + 10 == len(list(net.named_parameters()))
    trained = {k: {n for n, _ in v} for k, v in parameter_groups(net, train_l2norm=True).items()}
    assert trained["frozen"] == set() and L2NORM_NAMES <= trained["main"]


@pytest.mark.parametrize("train_l2norm", [False, True])
def test_l2norm_weights_move_only_when_trained_but_always_count_in_the_clip(net, train_l2norm):
    opt = make_optimizer(net, "sgd", 0.1, 0.1, 0.9, 5e-4, train_l2norm=train_l2norm)
    set_lr(opt, 0.2)
    assert {pg["name"]: pg["lr"] for pg in opt.param_groups} == pytest.approx(
        {"main": 0.2, "ref": 0.02, **({} if train_l2norm else {"frozen": 0.0})})
    before = {n: p.numpy().copy() for n, p in net.named_parameters()}
    x = jt.array(np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32))
    loc, conf, R = net(x)
    # a loss that reaches the L2Norm weights through the second shot only: ef1..3
    loss = loc.sqr().sum() + conf.sqr().sum() + R.sum()
    opt.backward(loss)
    grads = {n: float(g.sqr().sum().item()) for pg in opt.param_groups for n, g in
             zip([n for n, p in net.named_parameters() if any(p is q for q in pg["params"])], pg["grads"])}
    assert grads["L2Normef1.weight"] > 0   # part of the clip norm in both settings
    opt.step()
    after = {n: p.numpy() for n, p in net.named_parameters()}
    moved = {n for n in after if not np.array_equal(after[n], before[n])}
    assert ("L2Normef1.weight" in moved) == train_l2norm
    assert "loc_pal2.0.weight" in moved and "ref.3.weight" in moved
    for n, p in net.named_parameters():   # restore for the next case
        p.assign(jt.array(before[n]))


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_optimizer_state_round_trip_continues_identically(kind):
    """Saving and loading every buffer (and AdamW's step count) resumes the same trajectory."""
    from dainet.training.optim import load_optimizer_state, make_optimizer, optimizer_state
    x = jt.array(np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32))

    def run(net, opt, steps):
        for _ in range(steps):
            loc, conf, _ = net(x, with_reflectance=False)
            opt.step(loc.sqr().mean() + conf.sqr().mean())

    def fresh():
        net = init_weights(build_model(paper_model(width=0.125), reflectance=False), 0, "kaiming")
        return net, make_optimizer(net, kind, 1e-3, 0.1, 0.9, 5e-4)

    net_a, opt_a = fresh()
    run(net_a, opt_a, 3)
    net_b, opt_b = fresh()
    run(net_b, opt_b, 2)
    state = optimizer_state(opt_b)
    net_c, opt_c = fresh()
    net_c.load_state_dict(net_b.state_dict())
    load_optimizer_state(opt_c, state, "test")
    assert opt_c.n_step == 2
    run(net_c, opt_c, 1)
    for (n, a), (_, c) in zip(net_a.state_dict().items(), net_c.state_dict().items()):
        np.testing.assert_allclose(c.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=n)
    other = make_optimizer(net_c, "adamw" if kind == "sgd" else "sgd", 1e-3, 0.1, 0.9, 5e-4)
    from dainet.weights import WeightError
    with pytest.raises(WeightError, match="optimiser state does not fit"):
        load_optimizer_state(other, state, "test")


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_scales_all_gradients_by_their_joint_norm(max_norm):
    """torch.nn.utils.clip_grad_norm_: g * min(1, max_norm / (||all g||_2 + 1e-6)); a
    stop-grad parameter takes no part."""
    a, b, c = jt.array([1.0, 2.0]), jt.array([[3.0], [4.0]]), jt.array([5.0])
    c.stop_grad()
    opt = jt.optim.SGD([a, b, c], 0.1)
    opt.backward((a * jt.array([3.0, -1.0])).sum() + (b * b).sum())   # grads (3, -1) and (6, 8)
    clip_grad_norm(opt, max_norm)
    norm = np.sqrt(9 + 1 + 36 + 64)
    scale = min(1.0, max_norm / (norm + 1e-6))
    np.testing.assert_allclose(opt.param_groups[0]["grads"][0].numpy(), np.array([3.0, -1.0]) * scale, rtol=1e-6)
    np.testing.assert_allclose(opt.param_groups[0]["grads"][1].numpy(), np.array([[6.0], [8.0]]) * scale, rtol=1e-6)
