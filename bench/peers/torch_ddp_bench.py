#!/usr/bin/env python3
"""PyTorch DistributedDataParallel CPU training throughput (gloo backend).

P processes x T threads each (default 2 x 1), global batch B split evenly (default
64 -> 32 per process). Full step per process: forward, CrossEntropyLoss, backward with
DDP's bucketed gradient all-reduce, SGD(lr 0.01, momentum 0.9). Eager mode.
Reports GLOBAL images/s = steps * global_batch / wall seconds (timed on rank 0, between
barriers), median over the timed windows.

Two ways to launch (same measurement):
  python torch_ddp_bench.py --model tf-tutorial --global-batch 64 --steps 100
      (spawns --nproc processes itself with torch.multiprocessing.spawn)
  torchrun --standalone --nproc_per_node 2 torch_ddp_bench.py --model tf-tutorial ...
      (detected from the RANK / WORLD_SIZE environment torchrun sets)
"""

import os
import socket

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import peercommon as pc
import torch_models


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, args):
    torch.set_num_threads(args.threads)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        run(rank, world, args)
    finally:
        dist.destroy_process_group()


def run(rank, world, args):
    if args.global_batch % world:
        raise SystemExit(f"--global-batch {args.global_batch} not divisible by {world}")
    local = args.global_batch // world
    torch.manual_seed(args.seed)  # same init everywhere (DDP also broadcasts rank 0's)
    model = torch_models.build(args.model)
    model.train()
    n_params = torch_models.count_params(model)
    if rank == 0:
        print(f"torch {torch.__version__}  DDP gloo  world={world} x threads={args.threads}"
              f"  global batch={args.global_batch} ({local}/process)  model={args.model}",
              flush=True)
        pc.check_params(args.model, n_params)
    ddp = DDP(model)

    g = torch.Generator().manual_seed(args.seed * 1000 + rank)
    x = torch.rand(local, pc.IMAGE_C, pc.IMAGE_HW, pc.IMAGE_HW, generator=g)
    y = torch.randint(0, pc.NUM_CLASSES, (local,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(ddp(x), y)
        loss.backward()  # DDP all-reduces gradient buckets during backward
        opt.step()
        return loss

    def finish(loss):
        val = loss.item()
        dist.barrier()  # the window ends when every rank has finished its steps
        return val

    def stop_all(mine):
        # Rank 0's clock decides; everyone learns it, so all ranks run the same steps.
        flag = torch.tensor([1 if (mine and rank == 0) else 0])
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    for _ in range(args.warmup):
        step()

    samples = []
    for r in range(args.repeats):
        dist.barrier()
        n, dt, loss_val = pc.timed_window(step, args.steps, args.max_window_seconds,
                                          finish=finish, stop_all=stop_all)
        ips = n * args.global_batch / dt
        samples.append(ips)
        if rank == 0:
            print(f"  window {r + 1}/{args.repeats}: {n} steps in {dt:.2f}s "
                  f"= {ips:.1f} images/s global (rank-0 loss {loss_val:.3f})", flush=True)

    if rank == 0:
        pc.report("pytorch-ddp-gloo", torch.__version__, args.model, args.global_batch,
                  args.threads, samples, n_params, args.json,
                  extra={"mode": "eager+DDP(gloo)", "processes": world,
                         "threads_per_process": args.threads,
                         "per_process_batch": local,
                         "launcher": "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ
                         or "LOCAL_RANK" in os.environ else "mp.spawn"})


def main():
    args = pc.base_parser(__doc__, ddp=True).parse_args()
    pc.warn_openblas_env()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # launched by torchrun
        worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), args)
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(args.nproc, args), nprocs=args.nproc, join=True)


if __name__ == "__main__":
    main()
