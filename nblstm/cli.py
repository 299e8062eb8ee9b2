"""Command line: ``python -m nblstm <command>`` (also installed as the ``nblstm`` script).

Commands:
  train       trains an LSTM on a task of nblstm.tasks; progress bar, held-out metric, checkpoints, resume
  gradcheck   finite-difference check of a chosen configuration; prints per-tensor relative errors
  bench       runs benchmarks/bench_lstm.py (nblstm vs torch.nn.LSTM) from a source checkout
"""
import argparse
import os
import runpy
import sys
import time

import numpy as np


def _gradcheck(args):
    import nblstm

    rng = np.random.default_rng(args.seed)
    common = dict(dtype=np.float64, seed=args.seed, bias=not args.no_bias, forget_bias=args.forget_bias,
                  cell_activation=args.cell_activation)
    kwargs = {}
    try:
        if args.model in ("lstm", "rnn"):
            if args.model == "lstm":
                model = nblstm.LSTM(args.input_size, args.hidden_size, num_layers=args.layers,
                                    bidirectional=args.bidirectional, proj_size=args.proj_size,
                                    peephole=args.peephole, **common)
            else:           # the cell activation is the RNN's nonlinearity; it has no forget gate or peepholes
                model = nblstm.RNN(args.input_size, args.hidden_size, num_layers=args.layers,
                                   bidirectional=args.bidirectional, nonlinearity=args.cell_activation,
                                   bias=not args.no_bias, dtype=np.float64, seed=args.seed)
            x = rng.standard_normal((args.steps, args.batch, args.input_size))
            if args.lengths:        # a padded batch: the first sequence runs all steps, the others are drawn
                kwargs["lengths"] = np.concatenate([[args.steps], rng.integers(0, args.steps + 1, args.batch - 1)])
        else:
            model = nblstm.LSTMCell(args.input_size, args.hidden_size, peephole=args.peephole, **common)
            x = rng.standard_normal((args.batch, args.input_size))
    except (ValueError, TypeError) as e:
        print(f"gradcheck: {e}", file=sys.stderr)
        return 2
    lengths = f", lengths {kwargs['lengths'].tolist()}" if kwargs else ""
    print(f"gradcheck {model!r}, x {x.shape}{lengths}, central differences eps={args.eps:g}, float64")
    start = time.perf_counter()
    result = nblstm.gradcheck(model, x, eps=args.eps, seed=args.seed, **kwargs)
    print(result)
    worst = max(result.values())
    verdict = "PASS" if worst <= args.tol else "FAIL"
    print(f"{verdict}: max relative error {worst:.3e} (tolerance {args.tol:g}), {time.perf_counter() - start:.1f} s")
    return 0 if verdict == "PASS" else 1


def _bench(args, rest):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_lstm.py")
    if not os.path.exists(script):
        print(f"bench: {script} not found; the benchmark ships with the source checkout, not the wheel",
              file=sys.stderr)
        return 2
    sys.argv = [script, *rest]
    sys.path.insert(0, os.path.dirname(script))    # as `python script` would: its helpers import
    runpy.run_path(script, run_name="__main__")
    return 0


#: per task: defaults of the training options (the README's numbers were measured with these)
TRAIN_DEFAULTS = {
    "adding": dict(hidden_size=32, lr=1e-2, steps=6000, batch_size=64),
    "temporal-order": dict(hidden_size=32, lr=1e-2, steps=4000, batch_size=64),
    "reber": dict(hidden_size=16, lr=1e-2, steps=1500, batch_size=32),
    "charlm": dict(hidden_size=256, lr=3e-3, steps=3000, batch_size=32),
    "digits": dict(hidden_size=64, lr=1e-2, steps=1500, batch_size=64),
    "dates": dict(hidden_size=64, lr=3e-3, steps=1000, batch_size=64),
}


def _cores():
    """--model name -> factory(input_size, hidden_size, *, seed, dtype, device, forget_bias, num_layers) of the
    recurrent core."""
    from nblstm.tasks import lstm_core, rnn_core
    return {"lstm": lstm_core, "rnn": rnn_core}


def _make_task(args):
    from nblstm import tasks
    dtype = np.dtype(args.dtype)
    if args.task == "adding":
        return tasks.Adding(args.length, dtype=dtype), {"length": args.length}
    if args.task == "temporal-order":
        return tasks.TemporalOrder(args.relevant, dtype=dtype), {"relevant": args.relevant}
    if args.task == "reber":
        return tasks.EmbeddedReber(seed=args.seed, dtype=dtype), {}
    if args.task == "charlm":
        return tasks.CharLM(bptt=args.bptt, embedding_dim=args.embedding_dim), \
            {"bptt": args.bptt, "embedding_dim": args.embedding_dim}
    if args.task == "dates":
        return tasks.Dates(dtype=dtype), {}
    return tasks.Digits(seed=args.seed, dtype=dtype), {}


def _make_optimizer(args, model):
    from nblstm import optim
    if args.optimizer == "sgd":
        return optim.SGD(model, args.lr, momentum=args.momentum, nesterov=args.nesterov,
                         weight_decay=args.weight_decay)
    cls = optim.AdamW if args.optimizer == "adamw" else optim.Adam
    return cls(model, args.lr, weight_decay=args.weight_decay)


def _train(args):
    import nblstm

    for k, v in TRAIN_DEFAULTS[args.task].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    try:
        if args.task == "dates" and (args.model != "lstm" or args.layers != 1):
            raise ValueError(f"dates: --model {args.model} --layers {args.layers} does not apply: its model is a "
                             "Seq2Seq (a one-layer bidirectional LSTM encoder and an attention decoder); leave both "
                             "out")
        task, task_args = _make_task(args)
        fb = task.forget_bias if args.forget_bias is None else args.forget_bias
        factory = _cores()[args.model]

        def core(i, h, **kw):
            return factory(i, h, forget_bias=fb, num_layers=args.layers, **kw)
        model = task.make_model(args.hidden_size, seed=args.seed, dtype=np.dtype(args.dtype), device=args.device,
                                core=core)
        optimizer = _make_optimizer(args, model)
    except (ValueError, TypeError, ImportError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 2
    config = {"task": args.task, "task_args": task_args, "model": args.model, "hidden_size": args.hidden_size,
              "layers": args.layers, "forget_bias": fb, "dtype": args.dtype, "optimizer": args.optimizer,
              "seed": args.seed, "batch_size": args.batch_size}
    start_step = 0
    if args.resume:
        if not args.checkpoint:
            print("train: --resume needs --checkpoint PATH", file=sys.stderr)
            return 2
        if os.path.exists(args.checkpoint):
            try:
                meta = nblstm.io.read(args.checkpoint)["metadata"]
            except nblstm.io.CheckpointError as e:
                print(f"train: --resume: {e}", file=sys.stderr)
                return 2
            saved = meta.get("config", {})
            diff = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
            if diff:
                print(f"train: --resume: {args.checkpoint} was written by another configuration; differs in "
                      + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items()), file=sys.stderr)
                return 2
            try:
                nblstm.io.load(args.checkpoint, model, optimizer)
            except nblstm.io.CheckpointError as e:
                print(f"train: --resume: {e}", file=sys.stderr)
                return 2
            start_step = int(meta["step"])
            print(f"resumed from {args.checkpoint} at step {start_step}")
        else:
            print(f"--resume: no checkpoint at {args.checkpoint} yet, starting at step 0")
    optimizer.lr = args.lr

    def save(step):
        nblstm.io.save(args.checkpoint, model, optimizer,
                       metadata={"config": config, "step": step, "nblstm_version": nblstm.__version__})

    def callback(step, model, optimizer):
        if args.checkpoint and args.checkpoint_every and step % args.checkpoint_every == 0:
            save(step)

    print(f"train {task!r}: {model!r}")
    print(f"  {type(optimizer).__name__} lr={args.lr:g}, batch {args.batch_size}, up to {args.steps} steps, "
          f"clip {args.clip:g}, seed {args.seed}, {args.dtype}, device {args.device}")
    print(f"  criterion: {task.criterion}")
    result = nblstm.fit(task, model, optimizer, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                        clip=args.clip or None, start_step=start_step, early_stop=not args.no_early_stop,
                        progress=not args.no_progress, callback=callback)
    if args.checkpoint:
        save(result.steps)
    ran = result.steps - start_step
    per = 1e3 * result.seconds / ran if ran else float("nan")
    loss = f"{result.loss:.5f}" if result.loss is not None else "n/a"
    print(f"trained steps {start_step}..{result.steps} in {result.seconds:.1f} s ({per:.1f} ms/step), "
          f"running loss {loss}")
    evaluation = task.evaluate(model)
    if task.window:
        met = result.criterion_met_at is not None
        print(f"training criterion: {'MET at step ' + str(result.criterion_met_at) if met else 'not met'} "
              f"({task.criterion})")
        print(f"held-out: {evaluation['text']}")
    else:
        met = bool(evaluation["solved"])
        print(f"held-out: {evaluation['text']}")
    print(f"{'SOLVED' if met else 'NOT SOLVED'}: {task.criterion}")
    if args.checkpoint:
        print(f"checkpoint: {args.checkpoint} (step {result.steps})")
    return 0 if met else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nblstm", description="LSTM networks with Numba kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gradcheck", help="finite-difference gradient check of a configuration")
    g.add_argument("--model", choices=["lstm", "cell", "rnn"], default="lstm",
                   help="nblstm.LSTM, LSTMCell, or the vanilla RNN (--cell-activation is its nonlinearity)")
    g.add_argument("--input-size", type=int, default=3)
    g.add_argument("--hidden-size", type=int, default=4)
    g.add_argument("--steps", type=int, default=6, help="T, sequence length (lstm)")
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--cell-activation", choices=["tanh", "relu"], default="tanh")
    g.add_argument("--forget-bias", type=float, default=1.0)
    g.add_argument("--no-bias", action="store_true")
    g.add_argument("--layers", type=int, default=1, help="num_layers (lstm, rnn)")
    g.add_argument("--bidirectional", action="store_true", help="(lstm)")
    g.add_argument("--proj-size", type=int, default=0, help="projection size P < H, 0 for none (lstm)")
    g.add_argument("--peephole", action="store_true", help="peephole connections")
    g.add_argument("--lengths", action="store_true", help="variable lengths drawn with --seed (lstm)")
    g.add_argument("--eps", type=float, default=1e-6)
    g.add_argument("--tol", type=float, default=1e-6)
    g.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train", help="train an LSTM on a task (adding, temporal-order, reber, charlm, digits)",
                       description="Train an LSTM on a task of nblstm.tasks and report the task's criterion. "
                                   "Options left out take the task's defaults (nblstm.cli.TRAIN_DEFAULTS). "
                                   "Exit status 0 when the criterion is met, 1 when not.")
    t.add_argument("task", choices=list(TRAIN_DEFAULTS))
    t.add_argument("--model", choices=["lstm", "rnn"], default="lstm",
                   help="the recurrent core: lstm, or rnn (vanilla Elman RNN, tanh; the long-lag baseline)")
    t.add_argument("--hidden-size", type=int, help="H (task default)")
    t.add_argument("--layers", type=int, default=1, help="stacked layers of the core (num_layers; default 1)")
    t.add_argument("--lr", type=float, help="learning rate (task default)")
    t.add_argument("--steps", type=int, help="maximum number of training steps (batches)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu or cuda: where the model, the loss and the optimizer run")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--forget-bias", type=float, help="added to the LSTM's forget-gate bias (task default: 5 for "
                   "adding and temporal-order, 1 otherwise)")
    t.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam")
    t.add_argument("--momentum", type=float, default=0.0, help="sgd only")
    t.add_argument("--nesterov", action="store_true", help="sgd only")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--clip", type=float, default=1.0, help="global gradient-norm limit (0: off)")
    t.add_argument("--length", type=int, default=100, help="adding: minimal sequence length T")
    t.add_argument("--relevant", type=int, choices=[2, 3], default=2, help="temporal-order: Task 6a (2) or 6b (3)")
    t.add_argument("--bptt", type=int, default=64, help="charlm: truncation length (characters per batch)")
    t.add_argument("--embedding-dim", type=int, default=32, help="charlm: embedding size")
    t.add_argument("--checkpoint", metavar="PATH", help="save model and optimizer here (.npz)")
    t.add_argument("--checkpoint-every", type=int, default=500, metavar="N", help="steps between checkpoints")
    t.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    t.add_argument("--no-early-stop", action="store_true", help="run all steps even once the criterion is met")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("bench", help="nblstm vs torch.nn.LSTM benchmark (arguments pass through)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "train":
        return _train(args)
    return _gradcheck(args)
