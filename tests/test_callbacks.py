"""Callbacks through real ``model.fit`` runs on a tiny model: EarlyStopping,
ModelCheckpoint, LearningRateScheduler, ReduceLROnPlateau, CSVLogger, the hooks of the
base class, and the argument checks.

Where a test needs the monitored value to follow a known sequence, a ``Script``
callback placed before the one under test writes it into the epoch logs (callbacks see
one shared logs dict, in the order given)."""
import csv
import doctest

import numpy as np
import pytest

import nnjit as nj
from nnjit import callbacks as cb
from nnjit.layers import Dense


class Script(cb.Callback):
    """Writes ``values[epoch]`` into the epoch logs under ``key``."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class Snapshots(cb.Callback):
    """The model's weights at the end of every epoch, and the rate used by each batch."""

    def on_train_begin(self, logs=None):
        self.weights = []
        self.batch_rates = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())

    def on_batch_begin(self, batch, logs=None):
        self.batch_rates.append(self.model.optimizer.current_learning_rate())


def tiny_model(lr=0.05, seed=0):
    nj.set_seed(seed)
    model = nj.Sequential([nj.Input((3,)), Dense(4, activation="tanh"), Dense(1)])
    model.compile(nj.optimizers.SGD(lr), "mse")
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.standard_normal((40, 1))).astype(np.float32)
    return x, y


def fit(model, data, callbacks, epochs, **kwargs):
    x, y = data
    return model.fit(x, y, epochs=epochs, batch_size=10, callbacks=callbacks, verbose=0, shuffle=False, **kwargs)


def assert_weights_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def weights_differ(a, b):
    return any(not np.array_equal(u, v) for u, v in zip(a, b))


# ----------------------------------------------------------------- base class and History
def test_hooks_are_called_in_order_and_history_records_epochs(data):
    calls = []

    class Recorder(cb.Callback):
        def on_train_begin(self, logs=None): calls.append("train_begin")
        def on_train_end(self, logs=None): calls.append("train_end")
        def on_epoch_begin(self, epoch, logs=None): calls.append(f"epoch_begin {epoch}")
        def on_epoch_end(self, epoch, logs=None): calls.append(f"epoch_end {epoch} {sorted(logs)}")
        def on_batch_begin(self, batch, logs=None): calls.append(f"batch_begin {batch}")
        def on_batch_end(self, batch, logs=None): calls.append(f"batch_end {batch}")

    model = tiny_model()
    x, y = data
    history = model.fit(x[:20], y[:20], epochs=2, batch_size=10, callbacks=[Recorder()], verbose=0)
    epoch = ["batch_begin 0", "batch_end 0", "batch_begin 1", "batch_end 1"]
    assert calls == (["train_begin", "epoch_begin 0"] + epoch + ["epoch_end 0 ['loss']", "epoch_begin 1"] + epoch
                     + ["epoch_end 1 ['loss']", "train_end"])
    assert history.epoch == [0, 1] and len(history.history["loss"]) == 2


# ----------------------------------------------------------------- EarlyStopping
def test_early_stopping_stops_at_the_right_epoch_and_restores_best_weights(data):
    # Best at epoch 3 (value 3); epochs 4 and 5 do not improve: with patience 2, stop after epoch 5.
    values = [5, 4, 4.5, 3, 3.2, 3.1, 3.05, 2]
    model = tiny_model()
    snaps = Snapshots()
    stop = cb.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = fit(model, data, [Script("score", values), snaps, stop], epochs=len(values))
    assert len(history.history["loss"]) == 6
    assert stop.stopped_epoch == 5 and stop.best_epoch == 3 and stop.best == 3
    assert weights_differ(snaps.weights[3], snaps.weights[5])
    assert_weights_equal(model.get_weights(), snaps.weights[3])


def test_early_stopping_without_restore_keeps_the_last_weights(data):
    model = tiny_model()
    snaps = Snapshots()
    fit(model, data, [Script("score", [5, 4, 4.5, 4.6]), snaps, cb.EarlyStopping("score", patience=1)], epochs=4)
    assert len(snaps.weights) == 3
    assert_weights_equal(model.get_weights(), snaps.weights[2])


def test_early_stopping_restores_best_weights_also_without_stopping(data):
    # As Keras 3: the best weights are set at the end of training in any case.
    model = tiny_model()
    snaps = Snapshots()
    stop = cb.EarlyStopping("score", patience=5, restore_best_weights=True)
    fit(model, data, [Script("score", [3, 1, 2]), snaps, stop], epochs=3)
    assert stop.stopped_epoch == 0
    assert_weights_equal(model.get_weights(), snaps.weights[1])


@pytest.mark.parametrize("values, kwargs, epochs_run", [
    ([5, 4, 4.5, 3], dict(patience=0), 3),                   # the first non-improving epoch stops
    ([5, 4, 4.5, 4.4, 4.3, 1], dict(patience=3), 5),
    ([1.0, 0.95, 0.92, 0.9], dict(patience=1), 4),            # every epoch improves
    ([1.0, 0.95, 0.92, 0.9], dict(patience=1, min_delta=0.1), 2),   # but by less than min_delta
    ([5, 5, 5, 5, 5], dict(patience=2), 3),
    ([5, 5, 5, 5, 5], dict(patience=2, baseline=2), 2),       # the first epoch did not reach the baseline
    ([5, 1, 5, 5, 5], dict(patience=2, baseline=2), 4),       # epoch 1 did
])
def test_early_stopping_patience_min_delta_baseline(data, values, kwargs, epochs_run):
    history = fit(tiny_model(), data, [Script("score", values), cb.EarlyStopping("score", **kwargs)],
                  epochs=len(values))
    assert len(history.history["loss"]) == epochs_run


def test_early_stopping_mode_auto_maximizes_accuracy_like_names(data):
    values = [0.5, 0.6, 0.55, 0.58, 0.7]
    for key, mode, epochs_run in [("val_auc", "auto", 3), ("val_accuracy", "auto", 3), ("val_f1", "max", 3),
                                  ("val_auc", "min", 2), ("val_mae", "auto", 2)]:
        stop = cb.EarlyStopping(monitor=key, patience=1, mode=mode)
        history = fit(tiny_model(), data, [Script(key, values), stop], epochs=5)
        assert len(history.history["loss"]) == epochs_run, (key, mode)
    assert cb.EarlyStopping("val_precision").mode == "max"
    assert cb.EarlyStopping("val_recall").mode == "max"
    assert cb.EarlyStopping("val_loss").mode == "min"


def test_early_stopping_on_real_validation_loss(data):
    x, y = data
    model = tiny_model(lr=0.3)
    snaps = Snapshots()
    stop = cb.EarlyStopping(patience=1, restore_best_weights=True)
    rng = np.random.default_rng(1)
    x_val = rng.standard_normal((20, 3)).astype(np.float32)
    y_val = rng.standard_normal((20, 1)).astype(np.float32)   # unrelated targets: val_loss soon rises
    history = model.fit(x, y, epochs=60, batch_size=10, validation_data=(x_val, y_val), shuffle=False,
                        callbacks=[snaps, stop], verbose=0)
    val = history.history["val_loss"]
    # Reference: stop at the first epoch after which val_loss has not improved for 1 epoch.
    best, best_epoch, expected_stop = np.inf, 0, None
    for epoch, v in enumerate(val):
        if v < best:
            best, best_epoch = v, epoch
        elif epoch > 0:
            expected_stop = epoch
            break
    assert expected_stop is not None and expected_stop < 59
    assert len(val) == expected_stop + 1
    assert stop.best_epoch == best_epoch
    assert_weights_equal(model.get_weights(), snaps.weights[best_epoch])
    assert model.evaluate(x_val, y_val)["loss"] == pytest.approx(min(val), rel=1e-5)


def test_early_stopping_missing_monitor_key_names_the_keys(data):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"monitor='val_loss' is not in the logs of epoch 1; "
                                         r"available keys: \['loss'\].*validation_data or validation_split"):
        fit(model, data, [cb.EarlyStopping()], epochs=2)
    with pytest.raises(ValueError, match=r"monitor='val_acc'.*\['loss', 'val_loss'\]"):
        fit(model, data, [cb.EarlyStopping("val_acc")], epochs=2, validation_split=0.25)


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(patience=-1), ValueError, "patience=-1"),
    (dict(patience=1.5), TypeError, "patience=1.5"),
    (dict(patience=True), TypeError, "patience=True"),
    (dict(monitor=3), TypeError, "monitor=3"),
    (dict(monitor=""), TypeError, "monitor=''"),
    (dict(mode="best"), ValueError, "mode='best'"),
    (dict(min_delta=-0.1), ValueError, "min_delta=-0.1"),
    (dict(restore_best_weights="yes"), TypeError, "restore_best_weights='yes'"),
    (dict(baseline="low"), TypeError, "baseline='low'"),
    (dict(verbose=2), ValueError, "verbose=2"),
])
def test_early_stopping_argument_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        cb.EarlyStopping(**kwargs)


# ----------------------------------------------------------------- ModelCheckpoint
def test_checkpoint_saves_only_improvements_and_files_load_back(data, tmp_path):
    values = [3, 2, 2.5, 1, 1.5]
    model = tiny_model()
    snaps = Snapshots()
    ckpt = cb.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.weights"), save_best_only=True,
                              save_weights_only=True)
    fit(model, data, [Script("val_loss", values), snaps, ckpt], epochs=5)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["ckpt-01.weights", "ckpt-02.weights", "ckpt-04.weights"]
    assert ckpt.best == 1 and ckpt.last_saved == str(tmp_path / "ckpt-04.weights")
    for epoch in (1, 2, 4):
        fresh = tiny_model(seed=99)
        fresh.load_weights(tmp_path / f"ckpt-{epoch:02d}.weights")
        assert_weights_equal(fresh.get_weights(), snaps.weights[epoch - 1])


def test_checkpoint_every_epoch_and_log_keys_in_the_name(data, tmp_path):
    model = tiny_model()
    snaps = Snapshots()
    ckpt = cb.ModelCheckpoint(tmp_path / "sub" / "e{epoch}-{loss:.5f}.w", save_weights_only=True)
    history = fit(model, data, [snaps, ckpt], epochs=3)
    names = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert names == sorted(f"e{i + 1}-{loss:.5f}.w" for i, loss in enumerate(history.history["loss"]))
    last = tmp_path / "sub" / f"e3-{history.history['loss'][2]:.5f}.w"
    fresh = tiny_model(seed=5)
    fresh.load_weights(last)
    assert_weights_equal(fresh.get_weights(), snaps.weights[2])


def test_checkpoint_fixed_name_holds_the_best_epoch_in_max_mode(data, tmp_path):
    path = tmp_path / "best.w"
    model = tiny_model()
    snaps = Snapshots()
    ckpt = cb.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True, save_weights_only=True)
    fit(model, data, [Script("val_accuracy", [0.5, 0.8, 0.7, 0.6]), snaps, ckpt], epochs=4)
    fresh = tiny_model(seed=3)
    fresh.load_weights(path)
    assert_weights_equal(fresh.get_weights(), snaps.weights[1])
    assert weights_differ(snaps.weights[1], snaps.weights[3])


def test_checkpoint_uses_model_save_when_there_is_one(data, tmp_path):
    model = tiny_model()
    saved = []
    model.save = lambda path: saved.append(path)   # the whole-model format, however it is written
    fit(model, data, [cb.ModelCheckpoint(str(tmp_path / "m{epoch}"))], epochs=2)
    assert saved == [str(tmp_path / "m1"), str(tmp_path / "m2")]
    assert not list(tmp_path.iterdir())
    fit(model, data, [cb.ModelCheckpoint(str(tmp_path / "w{epoch}"), save_weights_only=True)], epochs=1)
    assert len(saved) == 2 and (tmp_path / "w1").exists()


def test_checkpoint_whole_model_loads_back(data, tmp_path):
    model = tiny_model()
    if not hasattr(model, "save") or not hasattr(nj, "load_model"):
        pytest.skip("model.save and nj.load_model are not available")
    snaps = Snapshots()
    path = tmp_path / "best.nnjit"
    fit(model, data, [Script("val_loss", [2, 1, 3]), snaps, cb.ModelCheckpoint(path, save_best_only=True)], epochs=3)
    loaded = nj.load_model(path)
    assert_weights_equal(loaded.get_weights(), snaps.weights[1])


def test_checkpoint_without_model_save_writes_weights(data, tmp_path, monkeypatch):
    model = tiny_model()
    for cls in type(model).__mro__:   # a model class without save
        if "save" in vars(cls):
            monkeypatch.delattr(cls, "save")
    assert not hasattr(model, "save")
    snaps = Snapshots()
    fit(model, data, [snaps, cb.ModelCheckpoint(tmp_path / "m.w")], epochs=1)
    fresh = tiny_model(seed=4)
    fresh.load_weights(tmp_path / "m.w")
    assert_weights_equal(fresh.get_weights(), snaps.weights[0])


def test_checkpoint_errors(data, tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"monitor='val_loss'.*available keys: \['loss'\]"):
        fit(model, data, [cb.ModelCheckpoint(tmp_path / "a.w", save_best_only=True)], epochs=1)
    # Without save_best_only the monitor is not needed.
    fit(model, data, [cb.ModelCheckpoint(tmp_path / "a.w", save_weights_only=True)], epochs=1)
    with pytest.raises(ValueError, match=r"names 'val_auc'.*available keys"):
        fit(model, data, [cb.ModelCheckpoint(str(tmp_path / "{val_auc}.w"))], epochs=1)
    with pytest.raises(TypeError, match="filepath=3"):
        cb.ModelCheckpoint(3)
    with pytest.raises(ValueError, match="cannot format filepath"):
        cb.ModelCheckpoint("ckpt-{epoch:02d")
    with pytest.raises(TypeError, match="save_best_only='yes'"):
        cb.ModelCheckpoint("a.w", save_best_only="yes")
    with pytest.raises(ValueError, match="mode='up'"):
        cb.ModelCheckpoint("a.w", mode="up")


# ----------------------------------------------------------------- LearningRateScheduler
def test_scheduler_of_the_epoch_sets_the_rate_each_epoch_uses(data):
    model = tiny_model(lr=0.1)
    snaps = Snapshots()
    sched = cb.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    history = fit(model, data, [sched, snaps], epochs=3)
    expected = [0.1, 0.05, 0.1 / 3]
    assert snaps.batch_rates == pytest.approx([r for r in expected for _ in range(4)])
    assert history.history["learning_rate"] == pytest.approx(expected)
    assert model.optimizer.learning_rate == pytest.approx(0.1 / 3)


def test_scheduler_of_epoch_and_rate(data):
    model = tiny_model(lr=0.08)
    seen = []

    def halve(epoch, lr):
        seen.append((epoch, lr))
        return lr / 2

    history = fit(model, data, [cb.LearningRateScheduler(halve)], epochs=3)
    assert seen == [(0, pytest.approx(0.08)), (1, pytest.approx(0.04)), (2, pytest.approx(0.02))]
    assert history.history["learning_rate"] == pytest.approx([0.04, 0.02, 0.01])


def test_scheduled_rate_drives_the_updates(data):
    # SGD at 0.1 rescheduled to 0.02 trains exactly like SGD at 0.02.
    scheduled = tiny_model(lr=0.1)
    fit(scheduled, data, [cb.LearningRateScheduler(lambda epoch: 0.02)], epochs=2)
    plain = tiny_model(lr=0.02)
    fit(plain, data, [], epochs=2)
    assert_weights_equal(scheduled.get_weights(), plain.get_weights())
    other = tiny_model(lr=0.1)
    fit(other, data, [], epochs=2)
    assert weights_differ(other.get_weights(), plain.get_weights())


def test_scheduler_errors(data):
    with pytest.raises(TypeError, match="schedule=0.1"):
        cb.LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="positive finite float. Received: 0.0 at epoch 1"):
        fit(tiny_model(), data, [cb.LearningRateScheduler(lambda e: 0.1 if e == 0 else 0.0)], epochs=3)
    with pytest.raises(ValueError, match="Received: None at epoch 0"):
        fit(tiny_model(), data, [cb.LearningRateScheduler(lambda e: None)], epochs=1)
    model = tiny_model()
    model.compile(nj.optimizers.SGD(nj.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)), "mse")
    with pytest.raises(ValueError, match="learning_rate is a schedule"):
        fit(model, data, [cb.LearningRateScheduler(lambda e: 0.1)], epochs=1)


# ----------------------------------------------------------------- ReduceLROnPlateau
@pytest.mark.parametrize("values, kwargs, rates", [
    # Improvement at epoch 0 only; reductions after each 2 epochs without one.
    ([1, 1, 1, 1, 1, 1], dict(patience=2), [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]),
    ([1, 1, 1, 1, 1, 1, 1], dict(patience=2, cooldown=2), [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]),
    # Epoch 0 improves on inf; with patience 0 every later epoch reduces.
    ([1, 1, 1, 1, 1], dict(patience=0), [0.1, 0.1, 0.05, 0.025, 0.0125]),
    ([1, 1, 1, 1, 1], dict(patience=0, min_lr=0.03), [0.1, 0.1, 0.05, 0.03, 0.03]),
    ([3, 2, 1, 0.5, 0.4], dict(patience=1), [0.1] * 5),                 # always improving
    ([1, 0.9999, 0.9998, 0.9997], dict(patience=1, min_delta=1e-3), [0.1, 0.1, 0.05, 0.025]),
    ([1, 0.5, 0.9, 0.6, 0.4], dict(patience=2), [0.1, 0.1, 0.1, 0.1, 0.05]),
])
def test_reduce_lr_on_plateau(data, values, kwargs, rates):
    model = tiny_model(lr=0.1)
    snaps = Snapshots()
    plateau = cb.ReduceLROnPlateau(monitor="val_loss", factor=0.5, **kwargs)
    history = fit(model, data, [Script("val_loss", values), plateau, snaps], epochs=len(values))
    assert history.history["learning_rate"] == pytest.approx(rates)
    assert snaps.batch_rates == pytest.approx([r for r in rates for _ in range(4)])


def test_reduce_lr_on_plateau_max_mode_and_real_validation_loss(data):
    model = tiny_model(lr=0.1)
    plateau = cb.ReduceLROnPlateau(monitor="val_auc", factor=0.5, patience=1)
    history = fit(model, data, [Script("val_auc", [0.6, 0.7, 0.65, 0.9]), plateau], epochs=4)
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05])
    model = tiny_model(lr=0.1)
    history = fit(model, data, [cb.ReduceLROnPlateau(patience=1, factor=0.5)], epochs=6, validation_split=0.25)
    # Reference over the recorded val_loss (min_delta 1e-4).
    lr, best, wait, expected = 0.1, np.inf, 0, []
    for v in history.history["val_loss"]:
        expected.append(lr)
        if v < best - 1e-4:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= 1:
                lr, wait = lr * 0.5, 0
    assert history.history["learning_rate"] == pytest.approx(expected)
    assert model.optimizer.learning_rate == pytest.approx(lr)


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(factor=1.0), ValueError, "factor=1.0"),
    (dict(factor=0), ValueError, "factor=0"),
    (dict(patience=-2), ValueError, "patience=-2"),
    (dict(cooldown=1.5), TypeError, "cooldown=1.5"),
    (dict(min_lr=-1e-3), ValueError, "min_lr=-0.001"),
    (dict(min_delta=float("nan")), ValueError, "min_delta=nan"),
    (dict(mode="lower"), ValueError, "mode='lower'"),
])
def test_reduce_lr_on_plateau_argument_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        cb.ReduceLROnPlateau(**kwargs)


def test_reduce_lr_on_plateau_missing_key_and_schedule(data):
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau: monitor='val_loss'.*\['loss'\]"):
        fit(tiny_model(), data, [cb.ReduceLROnPlateau()], epochs=1)
    model = tiny_model()
    model.compile(nj.optimizers.SGD(nj.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)), "mse")
    with pytest.raises(ValueError, match="learning_rate is a schedule"):
        fit(model, data, [cb.ReduceLROnPlateau(monitor="loss")], epochs=1)


# ----------------------------------------------------------------- CSVLogger
def read_csv(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_the_history(data, tmp_path):
    path = tmp_path / "log.csv"
    logger = cb.CSVLogger(path)
    history = fit(tiny_model(), data, [logger], epochs=3, validation_split=0.25)
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    for i, row in enumerate(rows[1:]):
        assert float(row[1]) == history.history["loss"][i]      # full precision
        assert float(row[2]) == history.history["val_loss"][i]
    assert logger._file is None   # closed at the end of training


def test_csv_logger_flushes_every_epoch(data, tmp_path):
    path = tmp_path / "log.csv"
    seen = []

    class Reader(cb.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(read_csv(path)))

    fit(tiny_model(), data, [cb.CSVLogger(path), Reader()], epochs=3)
    assert seen == [2, 3, 4]


def test_csv_logger_append_separator_and_missing_keys(data, tmp_path):
    path = tmp_path / "log.csv"

    class OnlyFirst(cb.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                logs["extra"] = 7

    fit(tiny_model(), data, [OnlyFirst(), cb.CSVLogger(path, separator=";")], epochs=2)
    fit(tiny_model(), data, [cb.CSVLogger(path, separator=";", append=True)], epochs=2)
    rows = read_csv(path, ";")
    assert rows[0] == ["epoch", "loss", "extra"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "0", "1"]
    assert [r[2] for r in rows[1:]] == ["7", "NA", "NA", "NA"]
    assert all(len(r) == 3 for r in rows)
    # append=False replaces the file.
    fit(tiny_model(), data, [cb.CSVLogger(path)], epochs=1)
    assert len(read_csv(path)) == 2


class Boom(Exception):
    pass


def test_csv_logger_is_closed_when_a_callback_raises(data, tmp_path):
    path = tmp_path / "log.csv"
    logger = cb.CSVLogger(path)

    class RaiseAtEpoch1(cb.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Boom("stop here")

    with pytest.raises(Boom, match="stop here"):
        fit(tiny_model(), data, [logger, RaiseAtEpoch1()], epochs=5)
    assert logger._file is None   # on_train_end ran: the file is closed
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]   # every epoch logged before the error


def test_csv_logger_is_closed_when_a_training_step_raises(data, tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    logger = cb.CSVLogger(path)
    model = tiny_model()
    step = model._train_step
    calls = []

    def failing_step(xb, yb):
        calls.append(1)
        if len(calls) == 6:   # second batch of the second epoch
            raise Boom("step failed")
        return step(xb, yb)

    monkeypatch.setattr(model, "_train_step", failing_step)
    with pytest.raises(Boom, match="step failed"):
        fit(model, data, [logger], epochs=3)
    assert logger._file is None
    assert [r[0] for r in read_csv(path)] == ["epoch", "0"]


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(filename=None), TypeError, "filename=None"),
    (dict(filename="a.csv", separator=",,"), ValueError, "separator=',,'"),
    (dict(filename="a.csv", separator="\n"), ValueError, "separator="),
    (dict(filename="a.csv", append="yes"), TypeError, "append='yes'"),
])
def test_csv_logger_argument_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        cb.CSVLogger(**kwargs)


# ----------------------------------------------------------------- several together
def test_callbacks_together(data, tmp_path):
    model = tiny_model(lr=0.1)
    callbacks = [Script("val_loss", [5, 4, 4, 4, 4, 4, 4, 4]),
                 cb.ReduceLROnPlateau(factor=0.5, patience=1),
                 cb.EarlyStopping(patience=3),
                 cb.CSVLogger(tmp_path / "log.csv"),
                 cb.TerminateOnNaN()]
    history = fit(model, data, callbacks, epochs=8)
    assert len(history.history["loss"]) == 5
    rows = read_csv(tmp_path / "log.csv")
    assert rows[0] == ["epoch", "loss", "val_loss", "learning_rate"]
    # The rate each epoch trained with: epochs 0 and 1 improve, then halved after every epoch.
    assert [float(r[3]) for r in rows[1:]] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.025])


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(cb)
    assert result.attempted > 5 and result.failed == 0
