"""Tensor parallelism over torch.distributed (gloo on the CPU, NCCL on CUDA): the process group
(`comm.py`), the transform that shards a built model (`tp_transform.py`, `tp_layers.py`), and
the worker ranks that run each scheduled batch rank 0 sends them (`worker.py`)."""
