"""``clonebench perf``'s arguments, apart from the benchmark itself so that ``clonebench
--help`` imports nothing heavy."""
from __future__ import annotations

WORKLOADS = ("split-digits", "synthetic-fashion", "synthetic-cifar100")


def add_arguments(p) -> None:
    """``clonebench perf``'s arguments."""
    p.add_argument("--strategy", default="finetune", help="registered strategy to time "
                   "(default: finetune)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="default: cuda if available, else cpu")
    p.add_argument("--epochs", type=int, help="epochs per experience (default: split-digits' "
                   "own 10; 1 for synthetic-cifar100)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per method; the median "
                   "is reported (default: 3)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, among {', '.join(WORKLOADS)} (default: all)")
    p.add_argument("--images-per-experience", type=int, help="training images per experience "
                   "of the synthetic workloads (default: 200 on cpu, 5000 on cuda; 1000 for "
                   "synthetic-fashion on cpu)")
    p.add_argument("--cnn", help="the backbone of synthetic-fashion (default: the committed "
                   "Fashion-MNIST CNN)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads during the "
                   "measurement (default: 1, as in runs)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also print the N "
                   "functions with the most own time in one suite training (cProfile)")
    p.add_argument("--agreement", action="store_true", help="instead, compare the final "
                   "accuracies of replay, icarl and der with plain Avalanche's on split-digits")
    p.add_argument("--agreement-seeds", type=int, default=5, metavar="N",
                   help="seeds 0..N-1 of --agreement (default: 5)")
    p.add_argument("--grid", action="store_true", help="instead, time a small grid with source "
                   "networks (pnc, its ablations, weight fusion) on the local backend and on a "
                   "local Ray instance, and print the ratio")
    p.add_argument("--grid-seeds", type=int, default=4, metavar="N",
                   help="seeds 0..N-1 of --grid (default: 4)")
    p.add_argument("--jobs", type=int, help="CPUs of each backend for --grid (default: the "
                   "machine's)")
    p.add_argument("--seed-batch", nargs="?", const="finetune,joint", metavar="STRATEGIES",
                   help="instead, time N seeds of each strategy (default: finetune,joint) on "
                   "split-digits run one after another against trained together (run "
                   "--batch-seeds), whole runs, and print the speed-up")
    p.add_argument("--seed-count", type=int, default=10, metavar="N",
                   help="seeds 0..N-1 of --seed-batch (default: 10)")
