#!/usr/bin/env python3
"""PyTorch CPU training throughput, eager mode, one process.

Full step: forward, CrossEntropyLoss, backward, SGD(lr 0.01, momentum 0.9).
Random CIFAR-shaped data (N, 3, 32, 32), random labels, one fixed batch reused.
"""

import torch
import torch.nn as nn

import peercommon as pc
import torch_models


def main():
    args = pc.base_parser(__doc__).parse_args()
    pc.warn_openblas_env()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = torch_models.build(args.model)
    model.train()
    n_params = torch_models.count_params(model)
    isa = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}  threads={torch.get_num_threads()} "
          f"interop={torch.get_num_interop_threads()}  ATen ISA={isa}  model={args.model} "
          f"batch={args.batch}", flush=True)
    pc.check_params(args.model, n_params)

    x = torch.rand(args.batch, pc.IMAGE_C, pc.IMAGE_HW, pc.IMAGE_HW)
    y = torch.randint(0, pc.NUM_CLASSES, (args.batch,))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()

    samples = []
    for r in range(args.repeats):
        # CPU eager is synchronous; .item() inside the window just to be explicit.
        n, dt, loss_val = pc.timed_window(step, args.steps, args.max_window_seconds,
                                          finish=lambda loss: loss.item())
        ips = n * args.batch / dt
        samples.append(ips)
        print(f"  window {r + 1}/{args.repeats}: {n} steps in {dt:.2f}s "
              f"= {ips:.1f} images/s (loss {loss_val:.3f})", flush=True)

    pc.report("pytorch", torch.__version__, args.model, args.batch, args.threads,
              samples, n_params, args.json, extra={"mode": "eager", "aten_isa": isa})


if __name__ == "__main__":
    main()
