"""The ``nnjit`` command: ``train``, ``bench`` and ``info``."""
from __future__ import annotations

import argparse
import os
import sys
import time

_T0 = time.perf_counter()


def process_age() -> float:
    """Seconds since this process started (from /proc where available)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _T0


MODELS = ("mlp", "cnn", "charlm", "transformer")
TEXT_MODELS = ("charlm", "transformer")
# Per-sample input shape each example model reads the 8x8 digits as.
INPUT_SHAPES = {"mlp": (64,), "cnn": (1, 8, 8)}
DEFAULT_EPOCHS = {"mlp": 40, "cnn": 20, "charlm": 10, "transformer": 10}
DEFAULT_LEARNING_RATES = {"mlp": 1e-3, "cnn": 1e-3, "charlm": 3e-3, "transformer": 1e-3}


def build_model(name: str, input_shape, num_classes: int):
    """The example models ``nnjit train --model`` trains on the bundled digits."""
    import nnjit as nj
    from nnjit.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPool2D

    if name == "mlp":
        return nj.Sequential([
            nj.Input(input_shape),
            Dense(256, activation="relu"),
            Dropout(0.2),
            Dense(128, activation="relu"),
            Dense(num_classes, activation="softmax"),
        ], name="digits_mlp")
    if name == "cnn":
        return nj.Sequential([
            nj.Input(input_shape),
            Conv2D(32, 3, padding="same", activation="relu"),
            Conv2D(32, 3, padding="same", use_bias=False),
            BatchNormalization(),
            nj.layers.Activation("relu"),
            MaxPool2D(2),
            Conv2D(64, 3, padding="same", activation="relu"),
            MaxPool2D(2),
            Flatten(),
            Dropout(0.3),
            Dense(num_classes, activation="softmax"),
        ], name="digits_cnn")
    raise ValueError(f"nnjit train: unknown --model, expected one of {list(MODELS)}. Received: --model={name!r}")


def build_charlm(vocabulary: int):
    """The character-level language model of ``nnjit train --model charlm``: any length of
    character ids in, next-character scores (logits) at every step out."""
    import nnjit as nj
    from nnjit.layers import LSTM, Dense, Embedding

    return nj.Sequential([
        nj.Input((None,)),
        Embedding(vocabulary, 32),
        LSTM(256, return_sequences=True),
        Dense(vocabulary),
    ], name="shakespeare_charlm")


def build_transformer_lm(vocabulary: int, max_len: int):
    """The character-level Transformer of ``nnjit train --model transformer``: token and
    position embeddings, two causal pre-norm encoder blocks, next-character logits."""
    import nnjit as nj
    from nnjit.layers import Dense, LayerNormalization, PositionalEmbedding, TransformerEncoder

    return nj.Sequential([
        nj.Input((None,)),
        PositionalEmbedding(max_len, 128, input_dim=vocabulary),
        TransformerEncoder(4, 256, causal=True),
        TransformerEncoder(4, 256, causal=True),
        LayerNormalization(),
        Dense(vocabulary),
    ], name="shakespeare_transformer")


CHARLM_PROMPT = "KING RICHARD III:\n"


def train_charlm(args) -> int:
    import numpy as np

    import nnjit as nj

    text = nj.datasets.load_shakespeare(args.max_chars)
    chars, index = nj.datasets.char_vocabulary(text)
    ids = nj.datasets.encode(text, index)
    cut = int(len(ids) * 0.9)  # the last tenth of the text is held out
    x, y = nj.textgen.next_char_windows(ids[:cut], args.steps)
    x_val, y_val = nj.textgen.next_char_windows(ids[cut:], args.steps)
    prompt = CHARLM_PROMPT if all(c in index for c in CHARLM_PROMPT) else text[:text.index("\n") + 1]
    model = build_charlm(len(chars)) if args.model == "charlm" else build_transformer_lm(len(chars), args.steps)
    model.compile(nj.optimizers.Adam(learning_rate=args.learning_rate, clipnorm=5.0),
                  nj.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    print(f"nnjit train: model {args.model!r} on the bundled Shakespeare ({len(text):,} characters, {len(chars)} distinct; "
          f"{len(x)} training windows of {args.steps}), {nj.get_num_threads()} threads")

    class Samples(nj.callbacks.Callback):
        first = None

        def on_batch_end(self, batch, logs=None):
            if self.first is None:
                self.first = process_age()

        def on_epoch_end(self, epoch, logs=None):
            sample = nj.textgen.generate(self.model, prompt, chars, index, length=args.sample_length,
                                         temperature=0.7, steps=args.steps)
            print(f"--- sample after epoch {epoch + 1} (validation loss {logs.get('val_loss', float('nan')):.3f}):")
            print(sample)
            print("---", flush=True)

    samples = Samples()
    t0 = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_data=(x_val, y_val),
                        callbacks=[samples], verbose=args.verbose)
    seconds = time.perf_counter() - t0
    result = model.evaluate(x_val, y_val, batch_size=256)
    chars_seen = x.size * len(history.history["loss"])
    print(f"first training step finished {samples.first:.2f} s after the process started")
    print(f"trained {len(history.history['loss'])} epochs in {seconds:.1f} s: {chars_seen / seconds:,.0f} characters/s")
    print(f"held-out loss {result['loss']:.4f} ({result['loss'] / np.log(2):.3f} bits per character), "
          f"next-character accuracy {result['accuracy']:.4f}")
    _write_outputs(args, model, history)
    return 0 if np.isfinite(result["loss"]) else 1


def _write_outputs(args, model, history):
    os.makedirs(args.out, exist_ok=True)
    weights = os.path.join(args.out, f"{args.model}.weights.safetensors")
    model.save_weights(weights)
    print(f"weights written to {weights}")
    try:
        from nnjit import plot
    except ImportError:
        plot = None
    if plot is not None and plot.available():
        png = os.path.join(args.out, f"{args.model}-training.png")
        plot.plot_history(history, png)
        print(f"training curves written to {png}")
    else:
        print("training curves not drawn: install matplotlib (pip install 'nnjit[plot]')")


def cmd_train(args) -> int:
    import numpy as np

    import nnjit as nj

    if args.threads:
        nj.set_num_threads(args.threads)
    nj.set_seed(args.seed)
    if args.model in TEXT_MODELS:
        return train_charlm(args)
    (x_train, y_train), (x_test, y_test) = nj.datasets.load_digits()
    shape = INPUT_SHAPES[args.model]
    x_train, x_test = x_train.reshape((-1,) + shape), x_test.reshape((-1,) + shape)
    model = build_model(args.model, shape, 10)
    model.compile(nj.optimizers.Adam(learning_rate=args.learning_rate), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    print(f"nnjit train: model {args.model!r} on the bundled UCI digits "
          f"({len(x_train)} train / {len(x_test)} test samples), {nj.get_num_threads()} threads")
    class FirstStep(nj.callbacks.Callback):
        seconds = None

        def on_batch_end(self, batch, logs=None):
            if self.seconds is None:
                self.seconds = process_age()

    first = FirstStep()
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_test, y_test), callbacks=[first], verbose=args.verbose)
    seconds = time.perf_counter() - t0
    result = model.evaluate(x_test, y_test, batch_size=256)
    samples = len(x_train) * len(history.history["loss"])
    print(f"first training step finished {first.seconds:.2f} s after the process started")
    print(f"trained {len(history.history['loss'])} epochs in {seconds:.1f} s: {samples / seconds:,.0f} samples/s")
    print(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}")
    _write_outputs(args, model, history)
    return 0 if np.isfinite(result["loss"]) else 1


def cmd_info(args) -> int:
    import numpy as np

    import nnjit as nj
    from nnjit.kernels.activations import activation_forward

    activation_forward(np.zeros((64, 64), np.float32), 1, 2)  # start the pool so the threading layer is known
    print(nj.runtime.info())
    return 0


def cmd_bench(args) -> int:
    return run_bench(args.rest)


def run_bench(argv) -> int:
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "perf")
    if not os.path.isdir(here):
        print("nnjit bench: the perf/ suite is not next to this installation (run it from a source checkout)",
              file=sys.stderr)
        return 2
    sys.path.insert(0, os.path.dirname(here))
    from perf import suite

    return suite.main(list(argv))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # the suite parses its own options, including leading ones
        return run_bench(argv[1:])
    parser = argparse.ArgumentParser(prog="nnjit", description="Neural networks on the CPU with Numba kernels.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an example model on the bundled digits")
    t.add_argument("--model", default="mlp", choices=MODELS)
    t.add_argument("--epochs", type=int, default=None, help="default: 40 for mlp, 20 for cnn, 10 for charlm and transformer")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=None, help="default: 0.001 (charlm 0.003)")
    t.add_argument("--steps", type=int, default=64, help="charlm, transformer: characters per training window")
    t.add_argument("--sample-length", type=int, default=300, help="charlm, transformer: characters generated after each epoch")
    t.add_argument("--max-chars", type=int, default=None, help="charlm, transformer: train on the first N characters only")
    t.add_argument("--out", default="./nnjit-out", help="folder for the weights and the training-curve PNG")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    t.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    t.set_defaults(func=cmd_train)

    i = sub.add_parser("info", help="versions, threads, threading layer, BLAS, kernel cache")
    i.set_defaults(func=cmd_info)

    b = sub.add_parser("bench", help="the performance suite (perf/), side by side with PyTorch", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "train":
        if args.epochs is None:
            args.epochs = DEFAULT_EPOCHS[args.model]
        if args.learning_rate is None:
            args.learning_rate = DEFAULT_LEARNING_RATES[args.model]
        if (args.epochs < 0 or args.batch_size < 1 or args.steps < 1 or args.sample_length < 0
                or (args.max_chars is not None and args.max_chars < 1000)):
            parser.error("--epochs and --sample-length must be >= 0; --batch-size and --steps >= 1; "
                         "--max-chars >= 1000")
        if not args.learning_rate > 0:
            parser.error(f"--learning-rate must be positive. Received: --learning-rate={args.learning_rate}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
