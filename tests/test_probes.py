"""The kit's grid and its sampling; the batched head bank against heads trained one at a time; shuffling,
seeds and the linear probe on real ESC-10 features."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from probe_helpers import esc10_task
from sklearn.model_selection import ParameterGrid

from evaluation.probes.grid import PARAM_GRID, sample_grid, task_grid
from evaluation.probes.linear import linear_schedule
from evaluation.probes.mlp import HeadConfig, MLPBank, predict
from evaluation.probes.train import Member, Schedule, epoch_batches, train_heads
from evaluation.protocol import ProbeConfig, evaluate
from evaluation.scores import top1_acc


def test_grid_has_the_kits_16_points():
    points = list(ParameterGrid(PARAM_GRID))
    assert len(points) == 16
    assert {(p["hidden_layers"], p["lr"], p["initialization"]) for p in points} == {
        (h, lr, init) for h in (1, 2) for lr in (3.2e-3, 1e-3, 3.2e-4, 1e-4)
        for init in ("xavier_uniform_", "xavier_normal_")}
    assert {(p["hidden_dim"], p["dropout"], p["batch_size"], p["max_epochs"], p["patience"],
             p["check_val_every_n_epoch"]) for p in points} == {(1024, 0.1, 1024, 500, 20, 3)}


def test_sampled_points_follow_seed_everything_42_and_random_shuffle():
    random.seed(42)  # what seed_everything(42) does to Python's RNG before the kit's shuffle
    expected = list(ParameterGrid(PARAM_GRID))
    random.shuffle(expected)
    assert sample_grid({"task_name": "esc50"}) == expected[:8]
    # the same 8, written out: a change of sklearn's ordering or of Python's shuffle would show here
    assert [(c["hidden_layers"], c["lr"], c["initialization"]) for c in sample_grid({"task_name": "esc50"})] == [
        (1, 1e-4, "xavier_normal_"), (2, 1e-3, "xavier_uniform_"), (1, 1e-3, "xavier_normal_"),
        (1, 3.2e-4, "xavier_normal_"), (2, 3.2e-4, "xavier_normal_"), (2, 3.2e-4, "xavier_uniform_"),
        (2, 3.2e-3, "xavier_normal_"), (2, 3.2e-3, "xavier_uniform_")]
    assert len(sample_grid({"task_name": "esc50"}, grid_points=16)) == 16


def test_task_specific_overrides():
    assert task_grid({"task_name": "dcase2016_task2"})["check_val_every_n_epoch"] == [10]
    assert {c["check_val_every_n_epoch"] for c in sample_grid({"task_name": "dcase2016_task2"})} == {10}
    maestro = task_grid({"task_name": "maestro"})
    assert (maestro["max_epochs"], maestro["check_val_every_n_epoch"]) == ([50], [1])
    custom = {"task_name": "secret", "evaluation_params": {"task_specific_param_grid": {"max_epochs": [7]}}}
    assert task_grid(custom)["max_epochs"] == [7]
    with pytest.raises(ValueError, match="unknown grid"):
        task_grid({"task_name": "esc50"}, grid="slow")


@pytest.mark.parametrize("override, message", [
    ({"norm_after_activation": [False, True]}, r"norm_after_activation=\[True\] is not implemented"),
    ({"optim": ["SGD"]}, r"optim=\['SGD'\] is not implemented"),
    ({"learning_rate": [1e-3]}, "unknown hyper-parameter"),
])
def test_a_grid_this_runner_cannot_train_is_refused_not_ignored(override, message):
    metadata = {"task_name": "secret", "evaluation_params": {"task_specific_param_grid": override}}
    with pytest.raises(ValueError, match=f"task secret: .*{message}"):
        task_grid(metadata)
    assert task_grid({"task_name": "x", "evaluation_params": {"task_specific_param_grid": {
        "embedding_norm": ["LayerNorm"]}}})["embedding_norm"] == ["LayerNorm"]  # the kit never applies it


def test_initialisation_uses_the_kits_gains():
    state = MLPBank.init_state(HeadConfig(hidden_layers=2, initialization="xavier_uniform_"), 4000, 50, seed=0)
    first, second, _ = state.weights
    assert first.abs().max() <= np.sqrt(6 / (4000 + 1024)) and first.abs().max() > 0.95 * np.sqrt(6 / 5024)
    assert second.abs().max() <= np.sqrt(2) * np.sqrt(6 / 2048) and second.abs().max() > 0.95 * np.sqrt(6 / 1024)
    normal = MLPBank.init_state(HeadConfig(hidden_layers=1, initialization="xavier_normal_"), 4000, 50, seed=0)
    assert float(normal.weights[0].std()) == pytest.approx(np.sqrt(2 / 5024), rel=0.01)
    assert float(normal.weights[1].std()) == pytest.approx(np.sqrt(2) * np.sqrt(2 / 1074), rel=0.05)
    assert state.biases[0].abs().max() <= 1 / np.sqrt(4000)  # PyTorch's default bias init


@pytest.fixture(scope="module")
def esc(data_dir):
    task = esc10_task(data_dir)
    x = np.concatenate([task.splits[f"fold0{k}"].embeddings for k in range(5)])
    labels = [row[0] for k in range(5) for row in task.splits[f"fold0{k}"].labels]
    vocabulary = task.label_vocabulary
    y = np.eye(len(vocabulary), dtype=np.float32)[[vocabulary.index(label) for label in labels]]
    return task, torch.from_numpy(x), torch.from_numpy(y)


def _reference_head(state):
    """The kit's FullyConnectedPrediction built from the same initial tensors."""
    layers: list[torch.nn.Module] = []
    for weight, bias in zip(state.weights[:-1], state.biases[:-1], strict=True):
        linear = torch.nn.Linear(weight.shape[0], weight.shape[1])
        linear.weight.data.copy_(weight.t())
        linear.bias.data.copy_(bias)
        layers += [linear, torch.nn.BatchNorm1d(weight.shape[1]), torch.nn.Dropout(state.config.dropout),
                   torch.nn.ReLU()]
    out = torch.nn.Linear(state.weights[-1].shape[0], state.weights[-1].shape[1])
    out.weight.data.copy_(state.weights[-1].t())
    out.bias.data.copy_(state.biases[-1])
    return torch.nn.Sequential(*layers, out)


def test_bank_trains_like_heads_trained_one_at_a_time(esc):
    """Same batches, dropout off: the bank's loop equals torch.nn + torch.optim.Adam head by head."""
    _, x, y = esc
    train, valid = np.arange(80, 200), np.arange(40, 80)
    configs = [HeadConfig(hidden_layers=2, hidden_dim=64, dropout=0.0, lr=lr, initialization=init)
               for lr, init in ((3.2e-3, "xavier_uniform_"), (1e-4, "xavier_normal_"))]
    schedule = Schedule(max_epochs=15, check_every=3, patience=3, batch_size=32, shuffle=False)
    targets = y[valid].numpy()
    members = [Member(c, init_seed=i, shuffle_seed=0, train_rows=train, valid_rows=valid,
                      validate=lambda p, lg: (top1_acc(p, targets), None)) for i, c in enumerate(configs)]
    batched = train_heads(members, x, y, schedule, multilabel=False)

    for index, config in enumerate(configs):
        model = _reference_head(MLPBank.init_state(config, x.shape[1], y.shape[1], seed=index))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        best, best_epoch, wait = -1.0, -1, 0
        for epoch in range(schedule.max_epochs):
            model.train()
            for rows in torch.split(torch.as_tensor(train), schedule.batch_size):
                loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows].argmax(dim=1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if (epoch + 1) % 3 == 0:
                model.eval()
                with torch.no_grad():
                    value = top1_acc(torch.softmax(model(x[valid]), -1).numpy(), targets)
                if value > best:
                    best, best_epoch, wait = value, epoch, 0
                    with torch.no_grad():
                        best_logits = model(x[:40])
                else:
                    wait += 1
                    if wait >= schedule.patience:
                        break
        assert batched[index].best_value == best
        assert batched[index].epoch == best_epoch
        _, logits = predict([batched[index].state], x[:40], multilabel=False)
        scale = float(best_logits.abs().max())
        torch.testing.assert_close(logits[0], best_logits, rtol=0, atol=0.01 * scale)  # float drift over epochs
    order = sorted(range(2), key=lambda i: batched[i].best_value, reverse=True)
    assert batched[order[0]].best_value > 0.5  # a real problem, learnt


def test_bank_steps_equal_torch_adam_steps(esc):
    """Three steps per head, compared in training mode and parameter by parameter.

    The bias of a Linear before BatchNorm gets a gradient that is rounding noise (BatchNorm removes the
    mean); Adam's first steps scale that noise up to +-lr, differently in any two implementations, and it
    reaches eval-mode outputs only through the running mean. Those biases are therefore left out.
    """
    _, x, y = esc
    configs = [HeadConfig(hidden_layers=2, hidden_dim=128, dropout=0.0, lr=lr, weight_decay=wd)
               for lr, wd in ((3.2e-3, 0.0), (1e-4, 1e-2))]
    states = [MLPBank.init_state(c, x.shape[1], y.shape[1], seed=i) for i, c in enumerate(configs)]
    bank = MLPBank(states)
    rows = torch.arange(80, 200)
    for _ in range(3):
        bank.loss(bank.forward(x[rows], train=True), y[rows].argmax(dim=1), multilabel=False).backward()
        bank.adam_step()
    for index, (config, state) in enumerate(zip(configs, states, strict=True)):
        model = _reference_head(state)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[rows]), y[rows].argmax(dim=1)).backward()
            optimizer.step()
        with torch.no_grad():
            torch.testing.assert_close(bank.forward(x[rows], train=True)[index], model(x[rows]), rtol=1e-4, atol=1e-4)
        trained = bank.export(index)
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        norms = [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]
        for layer, linear in enumerate(linears):
            # a weight with a near-zero gradient may move by up to lr on rounding noise (Adam normalises it)
            close = torch.isclose(trained.weights[layer], linear.weight.detach().t(), rtol=1e-4, atol=1e-5)
            assert close.float().mean() > 0.999
            torch.testing.assert_close(trained.weights[layer], linear.weight.detach().t(), rtol=0, atol=config.lr)
        torch.testing.assert_close(trained.biases[-1], linears[-1].bias.detach(), rtol=1e-4, atol=1e-5)
        for (gamma, beta, _, _), norm in zip(trained.norms, norms, strict=True):
            torch.testing.assert_close(gamma, norm.weight.detach(), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(beta, norm.bias.detach(), rtol=1e-4, atol=1e-5)


def test_one_batch_per_head_gives_each_head_what_it_gets_alone(esc):
    """Heads on different rows ([G, B, D] input: other folds, other seeds): logits and every gradient of each head
    equal a one-head bank's on that head's rows."""
    _, x, y = esc
    states = [MLPBank.init_state(HeadConfig(hidden_layers=2, hidden_dim=64, dropout=0.0), x.shape[1], y.shape[1], i)
              for i in range(3)]
    rows = torch.arange(144).view(3, 48)
    bank = MLPBank(states)
    logits = bank.forward(x[rows], train=True)
    bank.loss(logits, y[rows].argmax(dim=-1), multilabel=False).backward()
    for head, state in enumerate(states):
        alone = MLPBank([state])
        expected = alone.forward(x[rows[head]], train=True)
        alone.loss(expected, y[rows[head]].argmax(dim=-1), multilabel=False).backward()
        torch.testing.assert_close(logits[head], expected[0], rtol=1e-5, atol=1e-5)
        for together, single in zip(bank.params, alone.params, strict=True):
            torch.testing.assert_close(together.grad[head], single.grad[0], rtol=1e-4, atol=1e-6)


def test_bf16_bank_keeps_float32_state_and_matches_fp32(esc):
    """bf16 runs the GEMMs only: logits and gradients stay float32 and close to fp32's, Adam state is float32."""
    _, x, y = esc
    configs = [HeadConfig(hidden_layers=h, hidden_dim=256, dropout=0.0, lr=1e-3) for h in (1, 2)]
    for config in configs:
        states = [MLPBank.init_state(config, x.shape[1], y.shape[1], seed=i) for i in range(2)]
        banks = {p: MLPBank(states, precision=p) for p in ("fp32", "bf16")}
        rows = torch.arange(0, 128)
        logits = {}
        for precision, bank in banks.items():
            logits[precision] = bank.forward(x[rows], train=True)
            bank.loss(logits[precision], y[rows].argmax(dim=1), multilabel=False).backward()
            assert all(p.grad.dtype == torch.float32 for p in bank.params)
            bank.adam_step()
        assert logits["bf16"].dtype == torch.float32
        scale = float(logits["fp32"].detach().abs().max())
        torch.testing.assert_close(logits["bf16"], logits["fp32"], rtol=0, atol=0.03 * scale)
        assert all(p.dtype == torch.float32 for p in banks["bf16"].params + banks["bf16"].exp_avg)
        for fp32, bf16 in zip(banks["fp32"].params, banks["bf16"].params, strict=True):
            assert float((fp32 - bf16).abs().max()) <= 2.5e-3  # one Adam step moves a weight by at most ~lr


def test_predict_in_the_training_precision_reproduces_the_validation_value(esc):
    """A bf16-trained head is tested as it was validated: predict(precision="bf16") gives its recorded best
    validation value exactly, fp32 GEMMs a different one."""
    _, x, y = esc
    train, valid = np.arange(80, 200), np.arange(0, 80)

    def validate(probabilities, logits):
        return -float(torch.nn.functional.cross_entropy(torch.as_tensor(logits), y[valid].argmax(dim=1))), None

    member = Member(HeadConfig(hidden_layers=1, hidden_dim=256, dropout=0.1, lr=1e-3), init_seed=0, shuffle_seed=0,
                    train_rows=train, valid_rows=valid, validate=validate)
    trained = train_heads([member], x, y, Schedule(max_epochs=6, check_every=3, patience=3, batch_size=64),
                          multilabel=False, precision="bf16")[0]
    values = {p: validate(None, predict([trained.state], x[valid], False, precision=p)[1][0].numpy())[0]
              for p in ("bf16", "fp32")}
    assert values["bf16"] == trained.best_value
    assert values["fp32"] != trained.best_value


def test_dropout_is_per_head_in_training_and_off_in_eval():
    configs = [HeadConfig(hidden_layers=1, hidden_dim=2048, dropout=p, lr=1e-3) for p in (0.1, 0.5)]
    bank = MLPBank([MLPBank.init_state(c, 8, 3, seed=i) for i, c in enumerate(configs)])
    bank.params[-2].data.copy_(torch.eye(2048, 3).expand(2, 2048, 3))  # read out 3 hidden units
    x = torch.randn(4096, 8)
    generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    with torch.no_grad():
        train = bank.forward(x, train=True, generators=generators)
        evaluation = bank.forward(x, train=False)
    assert torch.equal(evaluation, bank.forward(x, train=False).detach())
    for head, p in enumerate((0.1, 0.5)):
        dropped = (train[head] - bank.params[-1][head] == 0).float().mean().item()
        assert dropped == pytest.approx(p + (1 - p) * 0.5, abs=0.03)  # dropout, then ReLU's zeros


def test_each_heads_dropout_mask_comes_from_its_own_stream():
    """A head's masks are the same alone or in a bank with any neighbours: they depend on its generator only."""
    configs = [HeadConfig(hidden_layers=1, hidden_dim=64, dropout=0.1, lr=lr) for lr in (1e-3, 1e-4, 1e-3)]
    bank = MLPBank([MLPBank.init_state(c, 8, 3, seed=i) for i, c in enumerate(configs)])
    masks = bank._dropout_scale(16, 64, [torch.Generator().manual_seed(seed) for seed in (5, 6, 7)])
    assert masks.shape == (16, 3, 64) and masks.unique().tolist() == pytest.approx([0.0, 1 / 0.9])
    alone = MLPBank([MLPBank.init_state(configs[1], 8, 3, seed=1)])
    assert torch.equal(alone._dropout_scale(16, 64, [torch.Generator().manual_seed(6)])[:, 0], masks[:, 1])
    expected = (torch.rand((16, 1, 64), generator=torch.Generator().manual_seed(7)) < 0.9).float() / 0.9
    assert torch.equal(masks[:, 2:], expected)  # the draw a plain reimplementation makes
    with pytest.raises(ValueError, match="one generator per head"):
        bank._dropout_scale(16, 64, [torch.Generator()])
    bank.keep([0, 2])
    assert bank.keep_probability.shape == (1,) and [r[1:] for r in bank.optimizer_runs] == [(0, 2)]


def test_no_shuffle_keeps_the_row_order_every_epoch():
    for _ in range(3):
        assert [b.tolist() for b in epoch_batches(10, 4, False, None, False)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.cat(epoch_batches(10, 4, True, generator, False)) for _ in range(2))
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    assert [len(b) for b in epoch_batches(9, 4, False, None, True)] == [4, 4]  # BatchNorm: a lone row is dropped


def test_a_grid_point_trains_alike_alone_and_inside_an_eight_point_bank(esc):
    """Each head's initialisation and dropout stream come from its own seed, the batch order from the shared
    shuffle seed: grid point 3 reaches the same best epoch, stop and validation score trained alone or beside the
    other 7 points of the kit's grid (weights equal up to the float rounding of the batched matrix products)."""
    task, x, y = esc
    train, valid = np.arange(80, 200), np.arange(0, 80)
    targets = y[valid].numpy()
    points = sample_grid(task.metadata, 8)
    configs = [HeadConfig(hidden_layers=p["hidden_layers"], hidden_dim=p["hidden_dim"], dropout=p["dropout"],
                          lr=p["lr"], initialization=p["initialization"], hidden_norm=p["hidden_norm"])
               for p in points]
    assert len({c.family for c in configs}) < len(configs)  # some points share a bank

    def member(index: int) -> Member:
        return Member(configs[index], init_seed=7 * 1009 + index, shuffle_seed=7, train_rows=train,
                      valid_rows=valid, validate=lambda p, lg: (top1_acc(p, targets), None))

    schedule = Schedule(max_epochs=24, check_every=1, patience=2, batch_size=64)
    banked = train_heads([member(i) for i in range(8)], x, y, schedule, multilabel=False)[3]
    alone = train_heads([member(3)], x, y, schedule, multilabel=False)[0]
    assert banked.epochs_run < 24  # early stopping decided it
    assert (alone.epoch, alone.epochs_run, alone.best_value) == (banked.epoch, banked.epochs_run, banked.best_value)
    for first, second in zip(alone.state.weights, banked.state.weights, strict=True):
        torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-4)


def _linear_members(esc, shuffle_seed):
    y = esc[2]
    config = HeadConfig(hidden_layers=1, hidden_dim=64, dropout=0.0, lr=1e-3)
    targets = y[40:80].numpy()
    return [Member(config, 0, shuffle_seed, np.arange(80, 200), np.arange(40, 80),
                   lambda p, lg: (top1_acc(p, targets), None))]


def test_a_head_whose_validation_is_always_nan_keeps_its_first_checked_state(esc):
    """NaN counts as -inf (Lightning's ModelCheckpoint): the first check's state is kept, a finite value beats it."""
    _, x, y = esc
    schedule = Schedule(max_epochs=9, check_every=3, patience=5, batch_size=64, shuffle=False)
    values = iter([math.nan, math.nan, 0.25])
    nan_member = _linear_members(esc, 0)[0]
    later_member = _linear_members(esc, 0)[0]
    nan_member.validate = lambda p, lg: (math.nan, None)
    later_member.validate = lambda p, lg: (next(values), None)
    always_nan, finite_later = train_heads([nan_member, later_member], x, y, schedule, False)
    assert (always_nan.best_value, always_nan.epoch) == (-math.inf, 2)
    assert [v for _, v in always_nan.history] == [pytest.approx(math.nan, nan_ok=True)] * 3
    assert (finite_later.best_value, finite_later.epoch) == (0.25, 8)


@pytest.mark.parametrize("stop", [False, True])
def test_the_kit_stop_on_a_non_finite_value_is_an_option(esc, stop):
    """Lightning's EarlyStopping(check_finite=True) ends the run at a NaN check; the checkpoint rule is unchanged."""
    _, x, y = esc
    schedule = Schedule(max_epochs=12, check_every=3, patience=5, batch_size=64, shuffle=False, stop_on_non_finite=stop)
    members = _linear_members(esc, 0) + _linear_members(esc, 0) + _linear_members(esc, 0)
    sequences = ([0.5, math.nan, 0.9, 0.95], [math.nan, 0.25, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8])
    for member, values in zip(members, map(iter, sequences), strict=True):
        member.validate = lambda p, lg, values=values: (next(values), None)
    nan_second, nan_first, finite = train_heads(members, x, y, schedule, False)
    if stop:
        assert (nan_second.best_value, nan_second.epoch, nan_second.epochs_run) == (0.5, 2, 6)
        assert (nan_first.best_value, nan_first.epoch, nan_first.epochs_run) == (-math.inf, 2, 3)
    else:
        assert (nan_second.best_value, nan_second.epoch, nan_second.epochs_run) == (0.95, 11, 12)
        assert (nan_first.best_value, nan_first.epoch, nan_first.epochs_run) == (0.4, 11, 12)
    assert (finite.best_value, finite.epoch, finite.epochs_run) == (0.8, 11, 12)


@pytest.mark.parametrize("ties", [False, True])
def test_a_tie_improves_only_under_evars_rule(esc, ties):
    """Lightning (the HEAR protocol) needs a strict improvement; EVAR's EarlyStopping (``>=``, the linear
    protocol's schedule) keeps the later weights of a tie and resets its patience."""
    _, x, y = esc
    schedule = Schedule(max_epochs=8, check_every=1, patience=3, batch_size=64, shuffle=False, ties_improve=ties)
    member = _linear_members(esc, 0)[0]
    values = iter([0.5, 0.5, 0.4, 0.5, 0.4, 0.4, 0.4, 0.4])
    member.validate = lambda p, lg: (next(values), None)
    trained = train_heads([member], x, y, schedule, False)[0]
    assert trained.best_value == 0.5
    assert (trained.epoch, trained.epochs_run) == ((3, 7) if ties else (0, 4))
    assert linear_schedule(100, maximize=True).ties_improve and not Schedule().ties_improve


def test_shuffle_flag_changes_batches_and_compat_mode_ignores_the_stream(esc):
    _, x, y = esc
    runs = {}
    for shuffle in (False, True):
        schedule = Schedule(max_epochs=6, check_every=3, patience=5, batch_size=64, shuffle=shuffle)
        runs[shuffle] = [train_heads(_linear_members(esc, s), x, y, schedule, False)[0].state.weights[0]
                         for s in (1, 2)]
    assert torch.equal(runs[False][0], runs[False][1])
    assert not torch.equal(runs[True][0], runs[True][1])


def test_seeds_reproduce_bit_identically_and_differ_between_seeds(esc):
    task = esc[0]
    config = ProbeConfig(seeds=[1], grid_points=2, grid="faster", max_epochs=6)
    first, again = evaluate(task, config), evaluate(task, config)
    other = evaluate(task, ProbeConfig(seeds=[2], grid_points=2, grid="faster", max_epochs=6))
    assert first.runs[0]["folds"] == again.runs[0]["folds"]
    assert first.runs[0]["folds"] != other.runs[0]["folds"]


def test_linear_probe_learns_esc10(esc):
    result = evaluate(esc[0], ProbeConfig(protocol="linear", linear_lr=1e-3, max_epochs=60))
    assert result.protocol == {"name": "linear", "run": "linear-lr=0.001-max-epochs=60", "shuffle": True,
                               "stop_on_non_finite": False, "seeds": [0], "grid_points": None, "grid": None,
                               "precision": "fp32"}
    assert result.score["n"] == 5
    assert result.score["mean"] > 0.35  # chance is 0.1; 120 training clips per fold
    assert result.runs[0]["selected_hyperparameters"]["batch_size"] == 120  # min(200, n_train)
