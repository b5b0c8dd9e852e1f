"""Data-parallel training of a model holding rnnfast.torch modules, under PyTorch's
DistributedDataParallel (gloo backend, processes on this machine).

Each of ``world_size`` processes (``torch.multiprocessing.spawn``, a file rendezvous) takes
its share of every batch; DDP averages the gradients, so after each step every process holds
the parameters one process would have after the same step on the whole batch. The script
trains both ways and compares:

    python examples/ddp_train.py [--world-size 2] [--steps 5] [--dtype float64]

(``tests/test_examples_distributed.py`` runs it at a small size.)
"""
import argparse
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import rnnfast.torch as rt

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Net(torch.nn.Module):
    """Two rnnfast.torch recurrent layers and a linear head on the last step."""

    def __init__(self, input_size=6, hidden_size=12, outputs=3):
        super().__init__()
        self.lstm = rt.LSTM(input_size, hidden_size, num_layers=2, batch_first=True)
        self.gru = rt.GRU(hidden_size, hidden_size, batch_first=True)
        self.head = torch.nn.Linear(hidden_size, outputs)

    def forward(self, x):
        out, _ = self.lstm(x)
        out, h_n = self.gru(out)
        return self.head(h_n[-1])


def make_problem(dtype, batch=16, seq_len=10, seed=0):
    """The model's initial weights and the batches, the same in every process."""
    torch.manual_seed(seed)
    model = Net().to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, seq_len, 6, generator=g, dtype=dtype)
    y = torch.randn(batch, 3, generator=g, dtype=dtype)
    return model, x, y


def train(model, x, y, steps, lr=0.1):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        # the mean over this process's rows; DDP averages the processes' gradients, which is
        # the whole batch's mean when the shares are equal
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    return loss.item()


def worker(rank, world_size, init_file, steps, dtype_name, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        model, x, y = make_problem(DTYPES[dtype_name])
        share = x.shape[0] // world_size
        rows = slice(rank * share, (rank + 1) * share)
        ddp = DistributedDataParallel(model)
        train(ddp, x[rows], y[rows], steps)
        if rank == 0:
            torch.save(model.state_dict(), out_path)
        # both ranks done before either tears the group down: a rank that destroyed it
        # while its peer still held the connection was seen to abort in gloo ("terminate
        # called without an active exception", once in CI)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def distributed(world_size, steps, dtype_name, workdir):
    """The parameters after ``steps`` DDP steps over ``world_size`` processes."""
    init_file = os.path.join(workdir, "rendezvous")
    out_path = os.path.join(workdir, "ddp_state.pt")
    # one OpenMP thread per process (two processes share this machine's cores)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(worker, args=(world_size, init_file, steps, dtype_name, out_path),
             nprocs=world_size, join=True)
    return torch.load(out_path)


def single(steps, dtype_name):
    """The parameters after ``steps`` steps of one process on the whole batch."""
    model, x, y = make_problem(DTYPES[dtype_name])
    train(model, x, y, steps)
    return model.state_dict()


def max_difference(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        ddp = distributed(args.world_size, args.steps, args.dtype, workdir)
    one = single(args.steps, args.dtype)
    initial = make_problem(DTYPES[args.dtype])[0].state_dict()
    print(f"{args.world_size} processes x {args.steps} steps: parameters moved by "
          f"{max_difference(one, initial):.3g}; DDP vs one process: max |difference| "
          f"{max_difference(ddp, one):.3g}")


if __name__ == "__main__":
    main()
